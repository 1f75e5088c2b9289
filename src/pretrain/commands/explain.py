"""`pretrain explain KEY [--recipe R]`: the type, default and description of a recipe key (config/explain.py)."""

from __future__ import annotations

from pretrain.config import Recipe
from pretrain.config.explain import explain as explain_key


def explain(key: str, recipe: Recipe | None = None) -> int:
    """Print what `key` is (a section lists its keys), with `recipe`'s value of it when one is given."""
    print(explain_key(key, recipe))
    return 0

"""`pretrain validate RECIPE...`: load and validate recipes; every problem as a `file: key: problem` line, exit 1."""

from __future__ import annotations

import sys
from pathlib import Path

from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError


def validate(paths: list[Path], overrides: list[str] | None = None, output_dir: str | None = None) -> int:
    """Print `ok:` per valid recipe and `error:` per problem of the others; returns 1 when any is invalid."""
    failed = 0
    for path in paths:
        try:
            recipe = load_recipe(path, overrides=overrides, output_dir=output_dir)
        except RecipeError as exc:
            failed += 1
            for line in exc.problems:
                print(f"error: {line}", file=sys.stderr)
            continue
        print(f"ok: {path} ({recipe.name}: {recipe.model.model_type}, {len(recipe.data.sources)} sources)")
    if failed:
        print(f"{failed} of {len(paths)} recipe(s) invalid", file=sys.stderr)
    return 1 if failed else 0

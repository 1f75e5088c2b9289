"""The shipped recipes, accelerate configs and model-card templates, and a recipe addressed by name.

A clone keeps them at the repository root (`recipes/<name>/config.yaml`, `accelerate_configs/*.yaml`,
`model_cards/*.j2`). The wheel carries the same three folders inside the package (`pretrain/recipes/`,
`pretrain/accelerate_configs/`, `pretrain/model_cards/`, copied there at build time by setup.py), so a recipe's
`accelerate_config: ../../accelerate_configs/cpu.yaml` resolves the same way in a clone and in a non-editable
install (`pretrain run tiny` works in both).

`hub.card_template` is a Jinja file ending `.j2` or `.jinja` (relative to the recipe, like every path of a recipe;
a link must lead to such a file too) or else the name of a shipped template: its output becomes the README.md that
is uploaded, so no other file can stand in for it.

A recipe argument is a path when that file exists (or a folder holding `config.yaml`), else a shipped recipe's
name; an unknown name is a `RecipeError` that lists the shipped names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pretrain.core.errors import RecipeError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
RECIPE_FILE = "config.yaml"
CARD_TEMPLATES = "model_cards"  # the shipped templates' folder, under `shipped_root()`
TEMPLATE_SUFFIXES = (".j2", ".jinja")  # what a card template's file name ends with


def shipped_root() -> Path | None:
    """The folder holding `recipes/`, `accelerate_configs/` and `model_cards/`: the installed package, else the
    source checkout."""
    if (PACKAGE_DIR / "recipes").is_dir():  # a wheel install
        return PACKAGE_DIR
    checkout = PACKAGE_DIR.parents[1]  # src/pretrain -> the repository root (editable install, clone)
    if (checkout / "pyproject.toml").is_file() and (checkout / "recipes").is_dir():
        return checkout
    return None


def recipe_names() -> list[str]:
    """Names of the shipped recipes (folders of `recipes/` holding a `config.yaml`), sorted."""
    root = shipped_root()
    if root is None:
        return []
    return sorted(p.parent.name for p in (root / "recipes").glob(f"*/{RECIPE_FILE}"))


def is_recipe_name(value: str) -> bool:
    """True for a bare name such as `tiny` (no folder part, no YAML suffix)."""
    path = Path(value)
    return (
        bool(value)
        and path.name == value
        and path.suffix not in (".yaml", ".yml")
        and value not in (".", "..")
    )


def resolve_recipe(value: str | Path) -> Path:
    """The recipe file for a CLI argument: an existing path wins, else a shipped recipe of that name.

    A path that does not exist and is not a bare name is returned unchanged, so that reading it reports
    "file not found" for that path.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / RECIPE_FILE).is_file():
        return path / RECIPE_FILE
    if not is_recipe_name(str(value)):
        return path
    root = shipped_root()
    if root is not None and (root / "recipes" / str(value) / RECIPE_FILE).is_file():
        return root / "recipes" / str(value) / RECIPE_FILE
    names = ", ".join(recipe_names()) or "none found"
    raise RecipeError(
        [
            f"{value}: no such recipe file, and no shipped recipe has that name "
            f"(shipped recipes: {names}; or give the path of a recipe YAML)"
        ]
    )


def card_templates() -> Path | None:
    """The folder of the shipped model-card templates (None when neither a wheel nor a checkout has one)."""
    root = shipped_root()
    return root / CARD_TEMPLATES if root is not None and (root / CARD_TEMPLATES).is_dir() else None


def card_template_names() -> list[str]:
    folder = card_templates()
    return sorted(p.name for p in folder.glob("*.j2")) if folder else []


def find_card_template(name: str, resolve: Callable[[str], Path]) -> Path | None:
    """`hub.card_template`, resolved like a recipe argument: an existing file at `resolve(name)` (the recipe's
    path rule: absolute, else relative to the recipe, else to the working directory) wins, else a shipped
    template of that name, else None. An edited copy of a shipped template next to the recipe is used."""
    if not name.endswith(TEMPLATE_SUFFIXES):
        return None
    candidate = resolve(name)
    if candidate.is_file() and candidate.resolve().name.endswith(TEMPLATE_SUFFIXES):
        return candidate
    folder = card_templates()
    shipped = folder / name if folder else None
    return shipped if shipped is not None and Path(name).name == name and shipped.is_file() else None

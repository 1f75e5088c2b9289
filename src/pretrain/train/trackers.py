"""Experiment trackers (`train.trackers`): their packages checked before training, and the recipe as the flat
`section.key: value` scalars trackers take as hyperparameters.
"""

from __future__ import annotations

import importlib.util

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.verdict import Verdict

# train.trackers name -> the module it needs (pip package of the same name)
TRACKER_MODULES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "trackio": "trackio",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "aim": "aim",
}


def missing_trackers(trackers: list[str]) -> list[str]:
    """The requested trackers whose package is not installed (accelerate would drop them with a warning)."""
    return [t for t in trackers if importlib.util.find_spec(TRACKER_MODULES[t]) is None]


def missing_trackers_message(missing: list[str]) -> str:
    packages = " ".join(TRACKER_MODULES[t] for t in missing)
    return (
        f"train.trackers: {', '.join(missing)} requested but not installed; `pip install {packages}` "
        "or remove it from train.trackers"
    )


def require_trackers(trackers: list[str]) -> None:
    """Every requested tracker's package is installed; accelerate would drop a missing one with a warning."""
    missing = missing_trackers(trackers)
    if missing:
        raise PretrainError(missing_trackers_message(missing))


def trackers_verdict(trackers: list[str]) -> Verdict:
    """✓ with the trackers found importable, ✗ naming the packages to install."""
    missing = missing_trackers(trackers)
    if missing:
        return Verdict.failed("trackers", missing_trackers_message(missing))
    return Verdict.passed("trackers", ", ".join(trackers) + " importable" if trackers else "none")


def flat_recipe(recipe: Recipe) -> dict[str, str | int | float | bool]:
    """The resolved recipe as `section.key: value` scalars (trackers such as tensorboard's hparams take no
    nesting); lists and nulls become strings."""
    flat: dict[str, str | int | float | bool] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value if isinstance(value, str | int | float | bool) else str(value)

    walk("", recipe.model_dump(mode="json"))
    return flat

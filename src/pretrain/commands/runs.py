"""Finding things in a run folder: the run a checkpoint belongs to, and the recipe that made it.

`pretrain eval` and `pretrain push` accept a checkpoint or a run folder and need the recipe that
trained it (tasks, hub settings, card facts) without the user passing it again.
"""

from __future__ import annotations

from pathlib import Path

from pretrain.config import Recipe, load_recipe
from pretrain.core.layout import RunLayout
from pretrain.train.checkpoint import RECIPE_YAML, TRAINER_STATE


def run_dir_of(path: Path) -> Path:
    """outputs/x/checkpoints/step-N -> outputs/x; outputs/x/final -> outputs/x; outputs/x -> outputs/x."""
    path = Path(path)
    if path.parent == RunLayout(path.parent.parent).checkpoints:
        return path.parent.parent
    if (path / "config.json").exists():
        return path.parent
    return path


def recipe_of_run(
    run_dir: Path,
    checkpoint: Path | None = None,
    recipe_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> Recipe | None:
    """The recipe given explicitly, else the one saved with the checkpoint, else the run's resolved copy."""
    if recipe_file:  # an explicit file must exist: load_recipe names it if not
        return load_recipe(recipe_file, overrides=overrides, output_dir=str(run_dir), check_files=False)
    candidates = []
    if checkpoint is not None:
        candidates.append(Path(checkpoint) / TRAINER_STATE / RECIPE_YAML)
    candidates.append(RunLayout(Path(run_dir)).resolved_recipe)
    for path in candidates:
        if path.exists():
            return load_recipe(path, overrides=overrides, output_dir=str(run_dir), check_files=False)
    return None

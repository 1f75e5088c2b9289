"""Runs made from another run: a ladder rung, an anneal branch, a mixture proxy.

    rung = derive_recipe(recipe, recipe.layout.ladder_rung("s0-b1"), edit=lambda raw: ...)
    train_derived(recipe, rung, resume="auto")

A derived run is the parent's resolved recipe with its own `output_dir`, edited (shape, length, schedule,
mix), with `--set` overrides applied last and validated again like any recipe. Its data stage folders
(`mix/`, `tokenizer/`, `tokens/`) are links to the parent's: the same documents, tokenizer and packed
tokens, never curated or packed twice. It trains through the train stage (`commands/run.py`), so it is
cached and resumable like any run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pretrain.commands.run import run_stage
from pretrain.commands.stages import data_stage_names, stage_path
from pretrain.config import Recipe, validate_recipe
from pretrain.config.base import apply_overrides
from pretrain.core.dist import on_main_process


def derive_recipe(
    parent: Recipe,
    output_dir: Path,
    edit: Callable[[dict], None] | None = None,
    overrides: list[str] | None = None,
    source: str | None = None,
) -> Recipe:
    """The parent's recipe in `output_dir`, `edit`ed in its JSON form, `overrides` applied last, validated.

    `source` names the file that errors point at (default: the parent's recipe file)."""
    raw = parent.model_dump(mode="json")
    raw["output_dir"] = str(output_dir)
    if edit is not None:
        edit(raw)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate_recipe(raw, source=source or parent.path or "<recipe>", check_files=False)


def set_length(raw: dict, steps: int) -> None:
    """A derived run's length in optimizer steps (its other length keys cleared)."""
    raw["train"].update(steps=steps, tokens=None, tokens_per_param=None)


def train_only(raw: dict) -> None:
    """A run that exists for its validation losses: no benchmarks in the loop, no Hub pushes."""
    raw["eval"]["enabled"] = False
    raw["hub"]["push_checkpoints"] = False


def link_data_stages(parent: Recipe, derived: Recipe) -> None:
    """`derived`'s data stage folders become links to `parent`'s. Called by every rank: the main process
    links, the others wait."""
    on_main_process(lambda: _link_data_folders(parent, derived))


def _link_data_folders(parent: Recipe, derived: Recipe) -> None:
    for name in data_stage_names():
        origin, link = stage_path(parent, name), stage_path(derived, name)
        if not origin.exists():
            continue
        if link.is_symlink() and link.resolve() == origin.resolve():
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(origin.resolve(), target_is_directory=True)


def train_derived(parent: Recipe, derived: Recipe, resume: str, branch_from: Path | None = None) -> Path:
    """Link `derived`'s data to `parent`'s and run its train stage (every rank); returns its `final/`.

    `branch_from`: a checkpoint of another run to start from when `resume` finds none of this run's."""
    link_data_stages(parent, derived)
    options = {"resume": resume}
    if branch_from is not None:
        options["branch_from"] = str(Path(branch_from).absolute())
    return run_stage(derived, "train", **options)

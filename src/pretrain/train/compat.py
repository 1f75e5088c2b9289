"""Can this recipe continue the checkpoints already in its run folder? Asked before any stage touches data.

A checkpoint fixes three things a recipe can no longer change and still resume from it:

- the model's shape (`model.*` sizes, heads, vocabulary, tying): the weights would not load;
- the tokenizer: a rebuilt one numbers its vocabulary anew, so the checkpoint's embeddings would index the
  wrong tokens (the caller says whether the tokenizer stage would re-run, and why);
- a learning-rate schedule whose decay has begun: a longer run puts the lr of the next step back up (a
  finished 40-step WSD run resumed as a 60-step one jumps from 0 to the peak), which undoes the decay.
  A checkpoint of the stable phase can be extended freely — that is what WSD is for.

Each problem is one line naming the checkpoint, what changed and the two ways forward.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pretrain.config import Recipe
from pretrain.config.optimizer import ScheduleConfig
from pretrain.core.verdict import Verdict
from pretrain.train import checkpoint as ckpt
from pretrain.train.schedules import lr_multiplier, warmup_steps

# model config keys that set a tensor's shape (a change means the weights no longer load)
SHAPE_KEY = re.compile(r"size|^num_|layers|heads|_dim$|positions|^vocab|^tie_word_embeddings$")
NEW_FOLDER = (
    "use a new --output-dir for this recipe (or delete checkpoints/ and final/ to start this folder over)"
)


def newest_checkpoint(recipe: Recipe) -> Path | None:
    """The checkpoint `--resume auto` would take: the newest whose files are intact (sizes against its COMPLETE
    manifest: quick, unlike the digests training checks) and whose state and recipe can be read. A damaged one
    is passed over here as training passes over it (training then names it in a warning)."""
    for folder in reversed(ckpt.list_checkpoints(recipe.layout.checkpoints)):
        if ckpt.damage(folder, hashes=False):
            continue
        try:
            saved_schedule(folder)
            json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            continue
        return folder
    return None


def shape_changes(folder: Path, recipe: Recipe) -> list[str]:
    """`model.key: saved -> recipe` for every shape field of the recipe that differs from the checkpoint's."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    changes = []
    if config.get("model_type") != recipe.model.model_type:
        changes.append(f"model.model_type: {config.get('model_type')} -> {recipe.model.model_type}")
    for key, value in recipe.model.hf_fields.items():
        if SHAPE_KEY.search(key) and key in config and config[key] != value:
            changes.append(f"model.{key}: {config[key]} -> {value}")
    return changes


def saved_schedule(folder: Path) -> tuple[int, int, ScheduleConfig]:
    """The checkpoint's step, its run's total steps and the schedule it ran."""
    ts = folder / ckpt.TRAINER_STATE
    state = json.loads((ts / ckpt.STATE_JSON).read_text(encoding="utf-8"))
    saved = yaml.safe_load((ts / ckpt.RECIPE_YAML).read_text(encoding="utf-8"))
    schedule = ScheduleConfig.model_validate(saved["train"]["schedule"])
    return state["step"], state.get("total_steps", state["step"]), schedule


def schedule_problem(folder: Path, recipe: Recipe, total_steps: int) -> str | None:
    """Why resuming `folder` under `total_steps` steps would undo its lr decay (None when it would not)."""
    step, saved_total, saved = saved_schedule(folder)
    if step > total_steps:
        return None  # past the new end: the training loop's own error says what to do
    before = lr_multiplier(step, saved_total, saved)
    after = lr_multiplier(step, total_steps, recipe.train.schedule)
    decaying = step >= warmup_steps(saved, saved_total) and before < 1.0
    if not decaying or after <= before + 1e-9:
        return None
    where = (
        f"ended its {saved_total}-step run with the lr decayed to {before:.0%} of its peak"
        if step >= saved_total
        else f"is at step {step} of a {saved_total}-step run whose lr has decayed to {before:.0%} of its peak"
    )
    return (
        f"{folder} {where}; training it on as a {total_steps}-step run would put the lr back up to {after:.0%} "
        f"of the peak. To train longer, branch a new decay with `pretrain anneal {folder} --steps "
        f"{max(1, total_steps - step)} --output-dir NEW_DIR` (best from a checkpoint of the stable phase), or "
        f"train the {total_steps}-step run from scratch with --output-dir NEW_DIR"
    )


def resume_problems(folder: Path, recipe: Recipe, total_steps: int) -> list[str]:
    """Why `recipe` cannot resume the checkpoint `folder` (empty when it can)."""
    problems = []
    changes = shape_changes(folder, recipe)
    if changes:
        problems.append(
            f"{folder} was trained with another model shape ({'; '.join(changes)}), so its weights cannot be "
            f"loaded: {NEW_FOLDER}"
        )
    schedule = schedule_problem(folder, recipe, total_steps)
    return problems + ([schedule] if schedule else [])


def tokenizer_problem(folder: Path, tokenizer_change: str) -> str:
    """The tokenizer stage would rebuild the tokenizer (`tokenizer_change` says why) under `folder`'s weights."""
    return (
        f"tokenizer/ would be rebuilt ({tokenizer_change}), but {folder} was trained on the current one: a new "
        f"tokenizer numbers its vocabulary anew and the checkpoint's embeddings would index the wrong tokens; "
        f"{NEW_FOLDER}"
    )


def run_folder_verdict(recipe: Recipe, total_steps: int, tokenizer_change: str | None) -> Verdict:
    """✓ when the run folder is new or its newest checkpoint can be resumed by `recipe`, else ✗ naming why."""
    folder = newest_checkpoint(recipe)
    if folder is None:
        return Verdict.passed("run folder", f"{recipe.out}: no checkpoint yet, training starts at step 0")
    problems = ([tokenizer_problem(folder, tokenizer_change)] if tokenizer_change else []) + resume_problems(
        folder, recipe, total_steps
    )
    if problems:
        return Verdict.failed("run folder", "; ".join(problems))
    step = saved_schedule(folder)[0]
    return Verdict.passed("run folder", f"resumes {folder.name} (step {step} of {total_steps})")

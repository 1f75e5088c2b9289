"""`pretrain run`: every stage in order, skipping the ones whose outputs are current.

    pretrain run recipes/tiny/config.yaml
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain run RECIPE

Data stages (curate, tokenizer, pack) run on the main process only; other ranks wait at a barrier.
Each writes into a temporary folder that is renamed into place with a `STAGE.json` fingerprint
only once complete (see `stages.py`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pretrain.config import Recipe
from pretrain.dist import partial_state, world_size
from pretrain.progress import format_seconds, get_logger
from pretrain.stages import (
    atomic_dir,
    is_current,
    require_current,
    stage_path,
    upstream_stages,
    write_marker,
)

log = get_logger("pretrain.pipeline")

DATA_STAGES = ("curate", "tokenizer", "pack")


def _stage_function(stage: str) -> Callable[[Recipe, Path], dict]:
    if stage == "curate":
        from pretrain.data.curate import curate

        return curate
    if stage == "tokenizer":
        from pretrain.tokenizer import build_tokenizer

        return build_tokenizer
    if stage == "pack":
        from pretrain.packing import pack

        return pack
    raise ValueError(stage)


def run_stage(recipe: Recipe, stage: str, force: bool = False) -> Path:
    """Run one data stage (on the main process; other ranks wait) and return its output folder."""
    if world_size() > 1:
        state = partial_state()
        if state.is_main_process:
            _run_stage_local(recipe, stage, force)
        state.wait_for_everyone()
        return stage_path(recipe, stage)
    return _run_stage_local(recipe, stage, force)


def _run_stage_local(recipe: Recipe, stage: str, force: bool) -> Path:
    out = stage_path(recipe, stage)
    for upstream in upstream_stages(recipe, stage):
        require_current(recipe, upstream, needed_by=f"pretrain {stage}")
    if not force and is_current(recipe, stage):
        log.info("%s: up to date (%s) — skipping", stage, out)
        return out
    if stage == "curate" and recipe.data.executor.type == "slurm":
        from pretrain.data.executor import submit_slurm

        submit_slurm(recipe, slurm_work_dir(recipe))  # raises CurationSubmitted: the jobs publish mix/
    return _publish(recipe, stage, lambda tmp: _stage_function(stage)(recipe, tmp))


def _publish(recipe: Recipe, stage: str, produce: Callable[[Path], dict | None]) -> Path:
    """Write a stage's output atomically with its marker (and, for curate, the run-level report copies)."""
    out = stage_path(recipe, stage)
    start = time.monotonic()
    with atomic_dir(out) as tmp:
        summary = produce(tmp) or {}
        summary["seconds"] = round(time.monotonic() - start, 2)
        write_marker(tmp, recipe, stage, summary)
    if stage == "curate":
        for name in ("curation_report.json", "curation_report.md"):
            if (out / name).exists():
                shutil.copy2(out / name, recipe.out / name)
    log.info("%s: done in %s -> %s %s", stage, format_seconds(summary["seconds"]), out, _brief(summary))
    return out


def slurm_work_dir(recipe: Recipe) -> Path:
    return recipe.out / ".curate-work"


def publish_curation(recipe: Recipe, work: Path, tasks: int) -> Path:
    """The Slurm publish job: merge the finished shards and publish mix/ (what `curate` does locally)."""
    from pretrain.data.curate import merge_and_mix

    out = _publish(recipe, "curate", lambda tmp: merge_and_mix(recipe, work, tasks, tmp))
    for path in work.iterdir():  # the jobs' logs stay for inspection; the data and the submission record go
        if path.name != "logs":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def _brief(summary: dict) -> str:
    keep = {k: v for k, v in summary.items() if k != "seconds" and isinstance(v, int | float | str)}
    return "(" + ", ".join(f"{k}={v}" for k, v in list(keep.items())[:6]) + ")" if keep else ""


def run_all(recipe: Recipe, force: bool = False, skip_eval: bool = False) -> Path:
    """curate -> tokenizer -> pack -> train (with in-loop evals) -> eval table/plots -> model card."""
    start = time.monotonic()
    recipe.out.mkdir(parents=True, exist_ok=True)
    for stage in DATA_STAGES:
        run_stage(recipe, stage, force=force)

    from pretrain.train import run_training

    final = stage_path(recipe, "train")
    if not force and is_current(recipe, "train"):
        log.info("train: up to date (%s) — skipping", final)
    else:
        run_training(recipe, resume="never" if force else "auto")

    if world_size() > 1:
        state = partial_state()
        if not state.is_main_process:
            state.wait_for_everyone()
            return final
    if not skip_eval:
        from pretrain.evaluation import summarize_run

        summarize_run(recipe.out)
    from pretrain.hub.card import write_model_card

    card = write_model_card(recipe, final)
    if recipe.hub.push_checkpoints and recipe.hub.repo_id:
        _push_final(recipe, final)
    if world_size() > 1:
        partial_state().wait_for_everyone()
    log.info(
        "run: finished in %s — model in %s, card %s", format_seconds(time.monotonic() - start), final, card
    )
    return final


def _push_final(recipe: Recipe, final: Path) -> None:
    """With `hub.push_checkpoints`, `main` gets the final model and its card once the run is done."""
    from pretrain.errors import PretrainError
    from pretrain.hub.push import push_folder

    try:
        url = push_folder(
            final, recipe.hub.repo_id, None, recipe.hub.private, commit_message="Final base model"
        )
        log.info("pushed the final model to %s@main: %s", recipe.hub.repo_id, url)
    except PretrainError as exc:  # the run itself succeeded; say how to finish the upload
        log.error("%s — the model is safe in %s; upload it with `pretrain push %s`", exc, final, final)

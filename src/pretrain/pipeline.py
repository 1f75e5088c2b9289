"""`pretrain run`: every stage of the registry in order, skipping the ones whose outputs are current.

    pretrain run recipes/tiny/config.yaml
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain run RECIPE

Data stages run on the main process only; other ranks wait at a barrier. After training, the run's
evaluation summary and the model card are written (and the final model pushed when the recipe says so).
"""

from __future__ import annotations

import time
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.dist import partial_state, world_size
from pretrain.core.errors import PretrainError
from pretrain.core.progress import format_seconds, get_logger
from pretrain.evaluation.report import summarize_run
from pretrain.hub.card import write_model_card
from pretrain.hub.push import push_folder
from pretrain.stages import STAGES, get_stage, is_current, require_current, stage_output
from pretrain.tokens.tokenizer import check_extension

log = get_logger("pretrain.pipeline")


def run_stage(recipe: Recipe, name: str, force: bool = False, **options: str) -> Path:
    """Run one stage (a data stage on the main process while other ranks wait); return its output folder."""
    stage = get_stage(name)
    if stage.main_process_only and world_size() > 1:
        state = partial_state()
        if state.is_main_process:
            _run_stage_here(recipe, name, force, options)
        state.wait_for_everyone()
    else:
        _run_stage_here(recipe, name, force, options)
    return stage.folder(recipe.layout)


def check_upstream(recipe: Recipe, name: str) -> None:
    """Every stage `name` reads is built and current (else a StageError saying what to run)."""
    for upstream in get_stage(name).upstream(recipe):
        require_current(recipe, upstream, needed_by=f"pretrain {name}")


def _run_stage_here(recipe: Recipe, name: str, force: bool, options: dict[str, str]) -> None:
    stage = get_stage(name)
    check_upstream(recipe, name)
    out = stage_output(recipe, name)
    if not force and is_current(recipe, name):
        log.info("%s: up to date (%s) — skipping", name, out.folder)
        return
    start = time.monotonic()  # the whole stage: curation's document pass runs before its publish step
    summary = stage.run(recipe, out, **options)
    if stage.main_process_only and isinstance(summary, dict):
        elapsed = format_seconds(time.monotonic() - start)
        log.info("%s: done in %s -> %s %s", name, elapsed, out.folder, _brief(summary))


def _brief(summary: dict) -> str:
    keep = {k: v for k, v in summary.items() if k != "seconds" and isinstance(v, int | float | str)}
    return "(" + ", ".join(f"{k}={v}" for k, v in list(keep.items())[:6]) + ")" if keep else ""


def stopped_before_the_end(recipe: Recipe) -> bool:
    """Training returned without publishing `final/`: a signal stopped it after a checkpoint (every rank
    sees the same). Nothing can be summarised or carded yet; the same command resumes it."""
    if recipe.layout.final.exists():
        return False
    log.warning(
        "training stopped before its end (a checkpoint was saved); run the same command again to resume — "
        "the eval table and the model card are written when training finishes"
    )
    return True


def run_all(recipe: Recipe, force: bool = False, skip_eval: bool = False) -> Path:
    """Every registered stage in order (data stages, then training with in-loop evals), then the eval
    table/plots and the model card."""
    start = time.monotonic()
    recipe.out.mkdir(parents=True, exist_ok=True)
    if recipe.tokenizer.extend and (force or not is_current(recipe, "tokenizer")):
        check_extension(recipe)  # a listed token the parent already has: an error before curation runs
    for name in STAGES:
        options = {
            o.dest: (o.when_forced if force and o.when_forced else o.default) for o in STAGES[name].options
        }
        run_stage(recipe, name, force=force, **options)

    final = recipe.layout.final
    if stopped_before_the_end(recipe):
        return final
    if world_size() > 1:
        state = partial_state()
        if not state.is_main_process:
            state.wait_for_everyone()
            return final
    if not skip_eval:
        summarize_run(recipe.out)
    card = write_model_card(recipe, final)
    if recipe.hub.push_checkpoints and recipe.hub.repo_id:
        _push_final(recipe, final)
    if world_size() > 1:
        partial_state().wait_for_everyone()
    log.info(
        "run: finished in %s — model in %s, card %s, libraries' output in %s",
        format_seconds(time.monotonic() - start),
        final,
        card.name,
        recipe.layout.log_file.name,
    )
    return final


def _push_final(recipe: Recipe, final: Path) -> None:
    """With `hub.push_checkpoints`, `main` gets the final model and its card once the run is done."""
    try:
        url = push_folder(
            final, recipe.hub.repo_id, None, recipe.hub.private, commit_message="Final base model"
        )
        log.info("pushed the final model to %s@main: %s", recipe.hub.repo_id, url)
    except PretrainError as exc:  # the run itself succeeded; the message says how to retry the upload
        log.error("%s", exc)

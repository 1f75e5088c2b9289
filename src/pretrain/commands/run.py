"""`pretrain run`: every stage of the registry in order, skipping the ones whose outputs are current.

    pretrain run recipes/tiny/config.yaml
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain run RECIPE

Data stages run on the main process only; other ranks wait at a barrier. After training, the run's
evaluation summary and the model card are written (and the final model pushed when the recipe says so).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pretrain.commands.card import write_model_card
from pretrain.commands.launch import LaunchRequest, relaunch_if_asked, will_relaunch
from pretrain.commands.preflight import require_preflight, tokenizer_change
from pretrain.commands.stages import (
    STAGES,
    damaged,
    data_stage_names,
    get_stage,
    is_current,
    require_current,
    stage_output,
    stage_plans,
)
from pretrain.config import Recipe
from pretrain.core.atomic import remove_dead_attempts
from pretrain.core.dist import on_main_process
from pretrain.core.errors import PretrainError, StageError
from pretrain.core.launcher import DATA_STAGES_DONE, under_launcher
from pretrain.core.lock import RunLock
from pretrain.core.progress import capture_run_output, format_seconds, get_logger
from pretrain.evaluation.report import summarize_run
from pretrain.hub.push import HubPushError, push_folder
from pretrain.tokens.tokenizer import check_extension
from pretrain.train.checkpoint import upload_filter
from pretrain.train.compat import newest_checkpoint, tokenizer_problem
from pretrain.train.metrics import read_records, validation_records

log = get_logger("pretrain.commands.run")


def run_stage(recipe: Recipe, name: str, force: bool = False, **options: str) -> Path:
    """Run one stage (a data stage on the main process while other ranks wait); return its output folder."""
    stage = get_stage(name)
    if stage.main_process_only:
        on_main_process(lambda: _run_stage_here(recipe, name, force, options))
    else:
        _run_stage_here(recipe, name, force, options)
    return stage.folder(recipe.layout)


def check_upstream(recipe: Recipe, name: str) -> None:
    """Every stage `name` reads is built and current (else a StageError saying what to run)."""
    for upstream in get_stage(name).upstream(recipe):
        require_current(recipe, upstream, needed_by=f"pretrain {name}")


def _run_stage_here(recipe: Recipe, name: str, force: bool, options: dict[str, str]) -> None:
    """A data stage holds the run folder's lock while it runs (training takes it itself, on its main process)."""
    if get_stage(name).main_process_only:
        with RunLock(recipe.layout.lock).held(f"pretrain {name}"):
            _build_stage(recipe, name, force, options)
    else:
        _build_stage(recipe, name, force, options)


def _build_stage(recipe: Recipe, name: str, force: bool, options: dict[str, str]) -> None:
    stage = get_stage(name)
    check_upstream(recipe, name)
    out = stage_output(recipe, name)
    remove_dead_attempts(out.folder)  # a killed attempt's temporary folder is as large as the output
    if not force and is_current(recipe, name):
        log.info("%s: up to date (%s) — skipping", name, out.folder)
        return
    if name == "tokenizer" and not force:
        refuse_a_tokenizer_under_checkpoints(recipe)
    problems = damaged(recipe, name)
    if problems:
        log.warning("%s: %s is damaged (%s) — building it again", name, out.folder, "; ".join(problems[:3]))
    start = time.monotonic()  # the whole stage: curation's document pass runs before its publish step
    summary = stage.run(recipe, out, **options)
    if stage.main_process_only and isinstance(summary, dict):
        elapsed = format_seconds(time.monotonic() - start)
        log.info("%s: done in %s -> %s %s", name, elapsed, out.folder, _brief(summary))


def refuse_a_tokenizer_under_checkpoints(recipe: Recipe) -> None:
    """A new vocabulary under existing checkpoints is refused before any data is touched, with or without the
    preflight (which says the same): their embeddings index the current tokenizer's ids, so the run would re-pack
    the corpus and then fail to load them."""
    change = tokenizer_change(recipe, {p.name: p for p in stage_plans(recipe)})
    checkpoint = newest_checkpoint(recipe) if change else None
    if checkpoint is not None:
        raise StageError(tokenizer_problem(checkpoint, change))


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


def run_data_stages(recipe: Recipe, force: bool = False) -> None:
    """The data stages in order (each on the main process), skipping current ones unless `force`."""
    recipe.out.mkdir(parents=True, exist_ok=True)
    if recipe.tokenizer.extend and (force or not is_current(recipe, "tokenizer")):
        check_extension(recipe)  # a listed token the parent already has: an error before curation runs
    for name in data_stage_names():
        run_stage(recipe, name, force=force, **_options(name, force))


def _options(name: str, force: bool) -> dict[str, str]:
    return {o.dest: (o.when_forced if force and o.when_forced else o.default) for o in STAGES[name].options}


def run_all(recipe: Recipe, force: bool = False, skip_eval: bool = False) -> Path:
    """Every registered stage in order (data stages, then training with in-loop evals), then the eval
    table/plots and the model card. Data stages that a parent process ran before relaunching this one
    (`DATA_STAGES_DONE`) are not forced again."""
    start = time.monotonic()
    run_data_stages(recipe, force=force and os.environ.get(DATA_STAGES_DONE) != "1")
    for name in STAGES:
        if not get_stage(name).main_process_only:
            run_stage(recipe, name, force=force, **_options(name, force))

    final = recipe.layout.final
    if stopped_before_the_end(recipe):
        return final
    card = on_main_process(lambda: _publish(recipe, final, skip_eval))
    if card is None:  # another rank: the main process wrote the summary and the card
        return final
    if recipe.hub.push_checkpoints and recipe.hub.repo_id:
        push_final(recipe, final)  # after every rank's barrier: a failed push is this process's error alone
    log.info(
        "run: finished in %s — model in %s, card %s, libraries' output in %s",
        format_seconds(time.monotonic() - start),
        final,
        card.name,
        recipe.layout.log_file.name,
    )
    return final


def _publish(recipe: Recipe, final: Path, skip_eval: bool) -> Path:
    """The run's evaluation summary and the model card."""
    if not skip_eval:
        validation = [
            {"step": r["step"], "tokens_seen": r.get("tokens_seen"), "bits_per_byte": r.get("val/bpb")}
            for r in validation_records(read_records(recipe.layout.metrics))
        ]
        summarize_run(recipe.out, validation=validation)
    return write_model_card(recipe, final)


def push_final(recipe: Recipe, final: Path) -> None:
    """With `hub.push_checkpoints`, `main` gets the final model and its card once the run is done. A failed
    push is the run's error (exit 1): `pretrain run ... && next-step` must not go on as if the model were on the
    Hub (it exited 0)."""
    try:
        url = push_folder(
            final,
            recipe.hub.repo_id,
            None,
            recipe.hub.private,
            skip=upload_filter(),
            commit_message="Final base model",
        )
    except PretrainError as exc:  # the model and its card are in final/: say how to push them
        reason = exc.reason if isinstance(exc, HubPushError) else str(exc)
        raise PretrainError(
            f"run: training finished ({final} holds the model and its card), but the push to "
            f"{recipe.hub.repo_id}@main failed: {reason} — then push it with `pretrain push {final} --repo-id "
            f"{recipe.hub.repo_id}` (or run the same command again)"
        ) from None
    log.info("pushed the final model to %s@main: %s", recipe.hub.repo_id, url)


def preflight_here(recipe: Recipe, launch: LaunchRequest | None, preflight: bool, force: bool) -> None:
    """The preflight checks before a command that trains starts work, in the process the user started (a
    launched rank trusts its parent, see commands/preflight.py)."""
    if preflight and not under_launcher():
        require_preflight(recipe, launch.num_processes if launch else None, force=force)


def stage_command(
    recipe: Recipe,
    name: str,
    force: bool,
    options: dict[str, str],
    launch: LaunchRequest | None = None,
    preflight: bool = True,
) -> int:
    """`pretrain curate|tokenizer|pack|train RECIPE`: one stage. Training runs under the recipe's launch config;
    a missing or stale input fails every launched rank alike, and the launcher's restart budget would retry it:
    it is said once, here, before launching anything (with the preflight checks)."""
    if not get_stage(name).main_process_only:
        check_upstream(recipe, name)
        preflight_here(recipe, launch, preflight, force or options.get("resume") == "never")
        relaunch_if_asked(recipe, launch)
    with capture_run_output(recipe.layout.log_file):  # libraries' bars and warnings: to the run's log
        run_stage(recipe, name, force=force, **options)
    return 0


def run_command(
    recipe: Recipe,
    force: bool = False,
    skip_eval: bool = False,
    launch: LaunchRequest | None = None,
    preflight: bool = True,
) -> int:
    """`pretrain run RECIPE`: the preflight checks; every stage (training under the recipe's launch config),
    then the summary and the card. When training relaunches under accelerate, the data stages run here first:
    a data error is reported once, by this process, instead of by every rank of every restart."""
    preflight_here(recipe, launch, preflight, force)
    if will_relaunch(recipe, launch):
        with capture_run_output(recipe.layout.log_file):
            run_data_stages(recipe, force=force)
        os.environ[DATA_STAGES_DONE] = "1"
    relaunch_if_asked(recipe, launch)
    with capture_run_output(recipe.layout.log_file):
        run_all(recipe, force=force, skip_eval=skip_eval)
    return 0

"""The ladder's rungs as runs: each rung's recipe, its folder's identity, and training rungs in order.

A rung is the recipe with its model rescaled (its AdamW lr by scaling/lr_transfer.py's rule, as the mixture
proxies') and its length, batch and schedule set by the design
(scaling/ladder.py): a derived run (commands/derive.py) in `ladder/rungs/<name>/` whose data stages link to
the recipe's. It trains through the train stage, so it is cached and resumable like any run: a finished rung
(current `final/STAGE.json`) is skipped, an interrupted one resumes from its newest checkpoint, and a branch
starts from its long run's checkpoint at its decay start. Under `accelerate launch` every rank trains the
rungs together (as `pretrain run` does).
"""

from __future__ import annotations

import json
import shutil
import time

from pretrain.commands.derive import derive_recipe, link_data_stages, set_length, train_derived, train_only
from pretrain.commands.stages import fingerprint, is_current
from pretrain.config import Recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.dist import on_main_process
from pretrain.core.errors import PretrainError
from pretrain.core.progress import format_seconds, get_logger, human
from pretrain.scaling.ladder import LadderDesign, LadderError, Run
from pretrain.scaling.ladder_record import RungResult
from pretrain.scaling.lr_transfer import scale_learning_rates
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import read_records, validation_records

log = get_logger("pretrain.ladder")

RUNG_RECORD = "RUNG.json"  # in a rung's folder: its train fingerprint (and a branch's long run's)


def rung_recipe(recipe: Recipe, design: LadderDesign, run: Run) -> Recipe:
    """The recipe of one rung: same data, tokenizer and family; the design's shape, length and schedule."""

    def edit(raw: dict) -> None:
        raw["model"].update(run.shape.model_fields())
        scale_learning_rates(raw, recipe.model.hidden_size, raw["model"]["hidden_size"])  # the stated rule
        set_length(raw, run.steps)
        train = raw["train"]
        train.update(global_batch_tokens=design.global_batch_tokens, micro_batch_size=design.micro_batch_size)
        # a staged mix keeps its proportions at the rung's length: token counts (the target's) become shares
        for stage, share in zip(train["data_stages"], recipe.train.stage_shares()):
            stage.update(share=share, tokens=None)
        # every run of a size shares its warmup, so a branch's lr equals its long run's up to the branch point
        train["schedule"].update(
            name="wsd", warmup_steps=run.warmup_steps, decay_fraction=design.decay_fraction
        )
        if run.branch_of is None:  # keep every branch point: checkpoints every quantum steps, none pruned
            train["checkpoint"].update(
                every_steps=run.checkpoint_every,
                every_fraction=None,
                keep_last=run.steps // run.checkpoint_every + 1,
                save_optimizer=True,
            )
        train_only(raw)  # the fit needs the val loss; benchmarks would only cost time

    return derive_recipe(recipe, recipe.layout.ladder_rung(run.name), edit)


def rung_resume(recipe: Recipe, design: LadderDesign, run: Run, rung: Recipe) -> str:
    """`--resume` for a rung: its own newest checkpoint, or for a new branch its long run's at the decay start.

    A rung folder records what it is being trained as (its train fingerprint, and a branch its long
    run's): when that changed, the folder's checkpoints and results belong to another run and go.
    """
    long_recipe = None
    identity: dict = {"fingerprint": fingerprint(rung, "train")}
    if run.branch_of:
        long_run = next(r for r in design.runs if r.name == run.branch_of)
        long_recipe = rung_recipe(recipe, design, long_run)
        identity["branch_of"] = {"run": long_run.name, "fingerprint": fingerprint(long_recipe, "train")}
    record = rung.layout.root / RUNG_RECORD
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = None
    if previous != identity:
        for stale in (rung.layout.final, rung.layout.checkpoints, rung.layout.evals):
            shutil.rmtree(stale, ignore_errors=True)
        rung.layout.metrics.unlink(missing_ok=True)
        write_text_atomic(record, json.dumps(identity))
    if long_recipe is None or ckpt.list_checkpoints(rung.layout.checkpoints):
        return "auto"
    start = long_recipe.layout.checkpoint(run.decay_start)
    if not ckpt.is_complete(start):
        raise LadderError(
            f"ladder rung {run.name}: branch point {start} of long run {run.branch_of} is missing; "
            f"delete {long_recipe.layout.final} and re-run `pretrain ladder` to retrain it"
        )
    return str(start)


def _final_validation(rung: Recipe, run: Run) -> dict:
    records = [r for r in validation_records(read_records(rung.layout.metrics)) if r["step"] == run.steps]
    if not records:
        raise LadderError(
            f"ladder rung {run.name}: {rung.layout.metrics} has no validation at its last step {run.steps}; "
            f"delete {rung.layout.final} and re-run `pretrain ladder`"
        )
    return records[-1]


def train_rung(recipe: Recipe, design: LadderDesign, run: Run) -> tuple[Recipe, bool]:
    """Train one rung unless it is current; returns its recipe and whether it trained now."""
    rung = rung_recipe(recipe, design, run)
    link_data_stages(recipe, rung)
    # the main process tidies the folder first (rung_resume); then every rank finds it tidy
    on_main_process(lambda: rung_resume(recipe, design, run, rung))
    resume = rung_resume(recipe, design, run, rung)
    if is_current(rung, "train"):
        return rung, False
    try:
        train_derived(recipe, rung, resume)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a rung is reported as that rung's
        detail = str(exc) if isinstance(exc, PretrainError) else f"{type(exc).__name__}: {exc}"
        raise LadderError(
            f"ladder rung {run.name} ({run.shape.describe()}, {run.steps} steps) failed in "
            f"{rung.layout.root}: {detail}. Finished rungs are kept; fix the cause and re-run `pretrain ladder`"
        ) from exc
    return rung, True


def _stable_points(rung: Recipe, run: Run) -> list[dict]:
    """The long run's validations at the peak lr (after warmup, before its decay)."""
    return [
        {"params": run.non_embedding_params, "tokens": r["tokens_seen"], "loss": r["val/loss"]}
        for r in validation_records(read_records(rung.layout.metrics))
        if run.warmup_steps < r["step"] <= run.decay_start
    ]


def _seconds(rung: Recipe) -> float | None:
    records = read_records(rung.layout.metrics)
    times = [r["time"] for r in records if "time" in r]
    return round(times[-1] - times[0], 1) if len(times) > 1 else None


def train_runs(recipe: Recipe, design: LadderDesign, runs: list[Run]) -> None:
    """Train `runs` in order (each skipped when current), logging which rung runs and the time left."""
    trained_flops, trained_seconds = 0.0, 0.0
    for index, run in enumerate(runs):
        remaining = sum(r.flops for r in runs[index:])
        eta = (
            f"~{format_seconds(remaining * trained_seconds / trained_flops)} left"
            if trained_flops
            else "time left known after the first rung"
        )
        log.info(
            "ladder: rung %d/%d %s — %s, %s params, %s tokens%s — %s",
            index + 1,
            len(runs),
            run.name,
            run.shape.describe(),
            human(run.non_embedding_params),
            human(run.tokens),
            f", branch of {run.branch_of} at step {run.decay_start}" if run.branch_of else "",
            eta,
        )
        began = time.monotonic()
        rung, trained = train_rung(recipe, design, run)
        if trained:
            trained_flops += run.flops
            trained_seconds += time.monotonic() - began
        else:
            log.info("ladder: rung %s is up to date (%s) — skipping", run.name, rung.layout.final)


def rung_results(recipe: Recipe, design: LadderDesign) -> tuple[list[RungResult], list[dict]]:
    """Every rung's final validation (and the long runs' peak-lr points), in design order, from the rung
    folders; a rung that is not current (never trained, failed, or trained as something else) is an error."""
    results, stable = [], []
    for run in design.runs:
        rung = rung_recipe(recipe, design, run)
        if not is_current(rung, "train"):
            raise LadderError(
                f"ladder rung {run.name} (size {run.size}) has not finished: {rung.layout.root} has no current "
                f"final/ (its training failed, is still running, or was for another design); see its "
                f"log there, then re-run `pretrain ladder {recipe.source_label}` to train the missing rungs"
            )
        final = _final_validation(rung, run)
        results.append(RungResult(run, final["val/loss"], final.get("val/bpb"), _seconds(rung)))
        if run.branch_of is None:
            stable += _stable_points(rung, run)
    return results, stable

"""What `pretrain watch` shows, read from a run folder's files: nothing but what the run itself wrote.

A run writes `metrics.jsonl` (step, validation, forecast and event records: train/metrics.py), one record per
in-loop evaluation in `evals/` (evaluation/records.py) and `final/` at its end. Reading only those files makes
the view work from any machine that sees the folder (a shared filesystem), while the run trains or after it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.config import load_recipe
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import EvalRecord, read_eval_records
from pretrain.evaluation.regressions import stderr_of
from pretrain.train.metrics import (
    EVENT_ROLLBACK,
    EVENT_SKIP,
    forecast_records,
    read_records,
    restart_count,
    start_record,
    step_records,
    validation_records,
)

STALE_AFTER_S = 600  # no record for this long while not finished: said, since the run may have died


@dataclass
class EvalRow:
    step: int
    metric: str  # `<task>/<metric>`
    value: float
    stderr: float | None


@dataclass
class RunState:
    """One snapshot of a run, as the view draws it."""

    folder: Path
    name: str
    status: str  # "finished", "training", "no record for 12m (stopped or stalled?)", "not started"
    step: int = 0
    total_steps: int | None = None
    tokens_seen: int = 0
    loss: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    eta_s: float | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    forecast: dict | None = None  # the newest `forecast` event: phase, actual, predicted, low, high, outside
    skipped: int = 0
    rollbacks: int = 0
    restarts: int = 0
    train_curve: list[tuple[float, float]] = field(default_factory=list)  # (tokens, loss)
    val_curve: list[tuple[float, float]] = field(default_factory=list)  # (tokens, val loss)
    band: list[tuple[float, float, float]] = field(
        default_factory=list
    )  # (tokens, low, high) of the forecast
    evals: list[EvalRow] = field(default_factory=list)  # of the newest evaluations


def eval_rows(records: list[EvalRecord], newest: int = 2) -> list[EvalRow]:
    """The reported metrics of the newest `newest` evaluations, with lm-eval's standard errors."""
    rows = []
    for record in sorted(records, key=lambda r: r.step)[-newest:]:
        for metric, value in sorted(record.metrics.items()):
            if isinstance(value, int | float) and "_stderr" not in metric:
                rows.append(
                    EvalRow(record.step, metric.removeprefix("eval/"), value, stderr_of(record, metric))
                )
    return rows


def planned_steps(layout: RunLayout, params: int | None) -> int | None:
    """The run's planned optimizer steps, from its resolved recipe and the parameter count it started with."""
    if not layout.resolved_recipe.exists() or not params:
        return None
    try:
        recipe = load_recipe(layout.resolved_recipe, check_files=False)
        return recipe.train.total_steps(params)
    except (PretrainError, ValueError, TypeError):
        return None


def read_run(folder: Path, now: float | None = None) -> RunState:
    """The snapshot of the run in `folder` (a run folder that has not started yet gives an empty one)."""
    layout = RunLayout(Path(folder))
    if not layout.root.is_dir():
        raise PretrainError(f"{folder}: no such run folder (give the run's output_dir)")
    records = read_records(layout.metrics)
    steps = step_records(records)
    start = start_record(records)
    state = RunState(layout.root, layout.root.name, "not started (no metrics.jsonl yet)")
    state.total_steps = planned_steps(layout, start.get("params"))
    if records:
        age = (now if now is not None else time.time()) - max(r.get("time", 0) for r in records)
        if layout.final.exists() and (not steps or steps[-1]["step"] >= (state.total_steps or 0)):
            state.status = "finished"
        elif age > STALE_AFTER_S:
            state.status = f"no record for {age / 60:.0f}m (stopped or stalled?)"
        else:
            state.status = "training"
    if steps:
        last = steps[-1]
        state.step, state.tokens_seen = last["step"], last.get("tokens_seen", 0)
        state.loss, state.lr = last.get("loss"), last.get("lr")
        state.tokens_per_s, state.mfu, state.eta_s = (
            last.get("tokens_per_s"),
            last.get("mfu"),
            last.get("eta_s"),
        )
        state.skipped = last.get("skipped_updates", 0) or 0
        state.train_curve = [(r["tokens_seen"], r["loss"]) for r in steps if _finite(r.get("loss"))]
    vals = validation_records(records)
    if vals:
        state.val_loss, state.val_bpb = vals[-1].get("val/loss"), vals[-1].get("val/bpb")
        state.val_curve = [(r["tokens_seen"], r["val/loss"]) for r in vals if _finite(r.get("val/loss"))]
    forecasts = forecast_records(records)
    if forecasts:
        state.forecast = forecasts[-1]
        by_step = {r["step"]: r.get("tokens_seen") for r in vals}
        state.band = [
            (by_step[f["step"]], f["low"], f["high"])
            for f in forecasts
            if by_step.get(f["step"]) is not None and _finite(f.get("low")) and _finite(f.get("high"))
        ]
    state.skipped = max(state.skipped, sum(1 for r in records if r.get("event") == EVENT_SKIP))
    state.rollbacks = sum(1 for r in records if r.get("event") == EVENT_ROLLBACK)
    state.restarts = restart_count(records)
    state.evals = eval_rows(read_eval_records(layout))
    return state


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

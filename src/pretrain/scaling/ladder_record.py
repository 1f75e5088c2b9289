"""`ladder/ladder.json`: what a ladder trained and reached — the one home of that format.

    {"kind": "pretrain.ladder", "version": 1, "target": {...}, "design": {...},
     "rungs": [{"run": Run.to_json(), "final_loss": 4.93, "final_bpb": 2.3, "seconds": 41.0}, ...],
     "stable_points": [{"params": N, "tokens": D, "loss": L}, ...], "bytes_per_token": 3.01,
     "seconds": 812.0, "launcher": "local, sequential", "data_fingerprint": "486c1341abb378e8",
     "backtest": {"params": N, "tokens": D, "actual": 4.5, "predicted": 4.6, "low": 4.5, "high": 4.7}}

`fit.json` (the final-loss law) and `fit_stable.json` (the peak-lr law) are `ScalingFit` files
(scaling/law.py); this record holds the rest: each rung's shape, tokens and losses, and the
val split's bytes per token that turns a predicted loss into bits per byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.errors import DataError
from pretrain.core.layout import RunLayout
from pretrain.evaluation.metrics import bits_per_byte
from pretrain.scaling.ladder import Run
from pretrain.scaling.law import ScalingFit

KIND, VERSION = "pretrain.ladder", 1


@dataclass
class RungResult:
    run: Run
    final_loss: float
    final_bpb: float | None
    seconds: float | None = None


@dataclass
class LadderRecord:
    target: dict  # non_embedding_params, tokens, source
    design: dict  # global_batch_tokens, micro_batch_size, decay_fraction, flops
    rungs: list[RungResult]
    stable_points: list[dict] = field(default_factory=list)
    bytes_per_token: float | None = None
    seconds: float | None = None
    launcher: str = "local, sequential"
    data_fingerprint: str | None = None  # of the packed tokens the rungs read (their stage marker's)
    # the fit without the largest size forecasting that size's longest run (fit.Backtest), as
    # {"params", "tokens", "actual", "predicted", "low", "high"}; None when the other sizes are too few
    backtest: dict | None = None

    def to_json(self) -> dict:
        return {
            "kind": KIND,
            "version": VERSION,
            "target": self.target,
            "design": self.design,
            "rungs": [
                {
                    "run": r.run.to_json(),
                    "final_loss": r.final_loss,
                    "final_bpb": r.final_bpb,
                    "seconds": r.seconds,
                }
                for r in self.rungs
            ],
            "stable_points": self.stable_points,
            "bytes_per_token": self.bytes_per_token,
            "seconds": self.seconds,
            "launcher": self.launcher,
            "data_fingerprint": self.data_fingerprint,
            "backtest": self.backtest,
        }

    @classmethod
    def from_json(cls, raw: dict) -> LadderRecord:
        if raw.get("kind") != KIND or raw.get("version") != VERSION:
            raise ValueError(f"expected kind {KIND!r} version {VERSION}")
        return cls(
            target=raw["target"],
            design=raw["design"],
            rungs=[
                RungResult(Run.from_json(r["run"]), r["final_loss"], r.get("final_bpb"), r.get("seconds"))
                for r in raw["rungs"]
            ],
            stable_points=raw.get("stable_points", []),
            bytes_per_token=raw.get("bytes_per_token"),
            seconds=raw.get("seconds"),
            launcher=raw.get("launcher", "local, sequential"),
            data_fingerprint=raw.get("data_fingerprint"),
            backtest=raw.get("backtest"),
        )

    def bpb(self, loss: float) -> float | None:
        """Bits per byte of the val split for a loss in nats/token (None without the bytes/token)."""
        return bits_per_byte(loss, self.bytes_per_token)

    @property
    def smallest_rung_flops(self) -> float:
        """6·N·D of the smallest rung: budgets below it are outside what the ladder measured."""
        return min(6.0 * r.run.non_embedding_params * r.run.tokens for r in self.rungs)


def write_record(layout: RunLayout, record: LadderRecord) -> Path:
    write_json_atomic(layout.ladder_record, record.to_json())
    return layout.ladder_record


def read_record(layout: RunLayout) -> LadderRecord | None:
    """The run's ladder record, or None when no ladder was run; a corrupt file is a DataError."""
    path = layout.ladder_record
    if not path.exists():
        return None
    try:
        return LadderRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a ladder record ({exc}); re-run `pretrain ladder`") from exc


def read_fit(path: Path) -> ScalingFit | None:
    """A fit file, or None when it does not exist; a corrupt one is a DataError naming the file."""
    if not path.exists():
        return None
    try:
        return ScalingFit.from_json(path.read_text(encoding="utf-8"))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc

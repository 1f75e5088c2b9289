"""`metrics.jsonl`: the one home of its record shapes, their writer (`MetricsLog`) and their readers.

One JSON object per line, each with `time` (unix seconds) and `step`. Record kinds:

- step record (every `train.log_every` steps): `tokens_seen, loss` (mean over the window), `lr,
  grad_norm` (of the last step), `tokens_per_s, mfu, step_time_s, data_wait_s, mem_gb, eta_s,
  skipped_updates`;
- validation record: `tokens_seen, val/loss, val/bpb, val/batches, val/seconds`, and per source with val
  documents `val/<source>/loss, val/<source>/bpb`;
- eval record: `tokens_seen` and `eval/<task>/<metric>` values;
- events, with an `event` key: `start` (device, world_size, params, precision as run, torch; `parent` {model, revision,
  commit} when continuing from a pretrained model), `restart` (restarts: the launcher's count, resumed_from),
  `skip` (reason, loss), `rollback` (from_step, to, rollbacks), `checkpoint` (path), `preempted`, `forecast` (phase,
  actual, predicted, low, high, outside: a validation pass against the ladder's forecast).

Numeric values also go to the accelerate trackers (`train.trackers`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

EVENT_START = "start"
EVENT_SKIP = "skip"
EVENT_ROLLBACK = "rollback"
EVENT_CHECKPOINT = "checkpoint"
EVENT_PREEMPTED = "preempted"
EVENT_FORECAST = "forecast"
EVENT_RESTART = "restart"  # the launcher restarted the job after a process died
EVENT_DATA_STAGE = (
    "data_stage"  # realised token shares of a data stage (at its end, and for all at the run's end)
)


class MetricsLog:
    """Appends records to metrics.jsonl (main process only; a no-op elsewhere) and to the trackers."""

    def __init__(self, path: Path, accelerator: Accelerator, enabled: bool):
        self.path, self.accelerator, self.enabled = path, accelerator, enabled
        self._fh = open(path, "a", encoding="utf-8") if enabled else None

    def log_start(
        self,
        step: int,
        device: str,
        world_size: int,
        params: int,
        precision: str,
        parent: dict | None = None,
    ) -> None:
        """The run's start record, at the step it starts from: 0, or a branch's checkpoint step."""
        extra = {"parent": parent} if parent else {}
        self.log_event(
            step,
            EVENT_START,
            device=device,
            world_size=world_size,
            params=params,
            precision=precision,
            torch=torch.__version__,
            **extra,
        )

    def log_step(
        self,
        *,
        step: int,
        tokens_seen: int,
        loss: float,
        lr: float,
        grad_norm: float,
        tokens_per_s: float,
        mfu: float | None,
        step_time_s: float,
        data_wait_s: float,
        mem_gb: float | None,
        eta_s: float,
        skipped_updates: int,
        z_loss: float | None = None,
        **extra: float | list | None,
    ) -> None:
        """One step record; `extra`: what only some runs have (a mixture of experts' `aux_loss`, `objective`,
        `expert_share_min` / `_max` per layer), left out when None."""
        self._write(
            {
                "step": step,
                "tokens_seen": tokens_seen,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s,
                "mfu": mfu,
                "step_time_s": step_time_s,
                "data_wait_s": data_wait_s,
                "mem_gb": mem_gb,
                "eta_s": eta_s,
                "skipped_updates": skipped_updates,
                **({"z_loss": z_loss} if z_loss is not None else {}),  # only when train.z_loss > 0
                **{k: v for k, v in extra.items() if v is not None},
            }
        )

    def log_validation(self, step: int, tokens_seen: int, values: dict) -> None:
        """`values`: the `val/...` keys."""
        self._write({"step": step, "tokens_seen": tokens_seen, **values})

    def log_eval(self, step: int, tokens_seen: int, results: dict) -> None:
        """`results`: the `eval/<task>/<metric>` keys."""
        self._write({"step": step, "tokens_seen": tokens_seen, **results})

    def log_event(self, step: int, event: str, **details: object) -> None:
        self._write({"step": step, "event": event, **details})

    def _write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        numeric = {
            k: v for k, v in record.items() if isinstance(v, int | float) and k not in ("step", "time")
        }
        if numeric and self.accelerator.trackers:
            self.accelerator.log(numeric, step=record.get("step"))

    def close(self) -> None:
        """Close metrics.jsonl and finish the trackers (they flush what they buffer: a launched rank ends
        without interpreter shutdown, see `core.dist.end_launched_rank`)."""
        if self._fh:
            self._fh.close()
            self._fh = None
        for tracker in self.accelerator.trackers:
            tracker.finish()


def memory_gb(device: torch.device) -> float | None:
    """Peak memory so far: CUDA allocations on a GPU, the process's max RSS on CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux: KiB -> GiB
    except ImportError:  # pragma: no cover - non-Unix
        return None


# ---------------------------------------------------------------- readers


def read_records(path: Path) -> list[dict]:
    """All records of a metrics.jsonl (a torn last line from a kill is skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def is_step_record(record: dict) -> bool:
    # a skip event carries a loss too; only step records have a loss and no event
    return "loss" in record and "event" not in record


def step_records(records: list[dict]) -> list[dict]:
    """The step records, in order."""
    return [r for r in records if is_step_record(r)]


def step_losses(path: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step, in order."""
    return [(r["step"], r["loss"]) for r in step_records(read_records(path))]


def validation_records(records: list[dict]) -> list[dict]:
    """The validation records, in order."""
    return [r for r in records if r.get("val/loss") is not None]


def last_validation(records: list[dict]) -> dict:
    """The newest validation record ({} when there is none)."""
    return next(reversed(validation_records(records)), {})


def forecast_records(records: list[dict]) -> list[dict]:
    """The `forecast` events (one per validation pass of a run with a ladder fit), in order."""
    return [r for r in records if r.get("event") == EVENT_FORECAST]


def restart_count(records: list[dict]) -> int:
    """Times the launcher restarted the run after a process died (0 when it never did)."""
    return max((r.get("restarts", 0) for r in records if r.get("event") == EVENT_RESTART), default=0)


def data_stage_shares(records: list[dict]) -> list[dict]:
    """The newest realised-share record of each data stage, in stage order (empty without train.data_stages)."""
    newest = {r["index"]: r for r in records if r.get("event") == EVENT_DATA_STAGE}
    return [newest[i] for i in sorted(newest)]


def start_record(records: list[dict]) -> dict:
    """The run's start event ({} when the log has none)."""
    return next((r for r in records if r.get("event") == EVENT_START), {})


def mean_measured(steps: list[dict], key: str) -> float | None:
    """Mean of a step-record field over the records where it was measured (present and non-zero)."""
    values = [r[key] for r in steps if r.get(key)]
    return sum(values) / len(values) if values else None


def train_seconds(steps: list[dict], log_every: int) -> float:
    """Training time from the step records: each holds the mean step time of its `log_every` steps."""
    return sum(r.get("step_time_s", 0) * log_every for r in steps)


def truncate_after(path: Path, step: int) -> None:
    """On resume, drop records written after the checkpoint's step so the log matches the run."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line from a kill
        if rec.get("step", 0) <= step:
            keep.append(line)
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def source_val_bpb(record: dict) -> dict[str, float]:
    """`{source: val bits/byte}` of a validation record (its `val/<source>/bpb` keys; the mixed split's left out)."""
    return {
        key.split("/")[1]: value
        for key, value in record.items()
        if key.startswith("val/") and key.endswith("/bpb") and key.count("/") == 2 and value is not None
    }

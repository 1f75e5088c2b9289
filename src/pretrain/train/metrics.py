"""Metrics: `metrics.jsonl` (one JSON object per record), accelerate trackers, throughput and MFU.

Record kinds: train steps (`step, tokens_seen, loss, lr, grad_norm, tokens_per_s, mfu, step_time_s,
data_wait_s, mem_gb, eta_s, skipped_updates`), validation (`val/loss, val/bpb`), evaluations
(`eval/...`), and events (`event: skip|rollback|checkpoint|preempted`, with details).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class MetricsLog:
    def __init__(self, path: Path, accelerator, enabled: bool):
        self.path, self.accelerator, self.enabled = path, accelerator, enabled
        self._fh = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record: dict) -> None:
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
        if self._fh:
            self._fh.close()


def memory_gb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux: KiB -> GiB
    except ImportError:  # pragma: no cover - non-Unix
        return None


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


def step_losses(path: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step, in order."""
    return [(r["step"], r["loss"]) for r in read_records(path) if "loss" in r and "event" not in r]


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

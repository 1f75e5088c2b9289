"""Progress of data tasks: a line per task and one for all tasks, every PROGRESS_EVERY_S seconds.

Each task (a process on the executor) logs `docs, bytes, MB/s, ETA` and writes the same counts to
`<work>/progress/<stage>-t<rank>.json`; `TotalProgress`, a thread of the process that runs the executor,
sums those files into a total line. On Slurm/Ray the per-task lines land in the task logs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.progress import format_seconds, get_logger, human

log = get_logger("pretrain.data")
PROGRESS_EVERY_S = float(os.environ.get("PRETRAIN_PROGRESS_EVERY_S", "30"))


def _line(label: str, docs: int, nbytes: int, seconds: float, total_bytes: int | None) -> str:
    rate = nbytes / max(seconds, 1e-9)
    eta = ""
    if total_bytes and rate > 0 and nbytes < total_bytes:
        eta = f", ETA {format_seconds((total_bytes - nbytes) / rate)}"
    return f"{label}: {docs:,} docs, {human(nbytes, 'B')} ({rate / 1e6:.2f} MB/s{eta})"


class TaskProgress:
    """Counts one task's documents and bytes; logs (and records for the total) at a steady interval."""

    def __init__(self, label: str, total_bytes: int | None = None, record: Path | None = None):
        self.label, self.total_bytes, self.record = label, total_bytes, record
        self.docs = self.bytes = 0
        self.start = self._last = time.monotonic()

    def update(self, docs: int, nbytes: int) -> None:
        self.docs += docs
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self._emit(now)

    def _emit(self, now: float, finished: bool = False) -> None:
        log.info(_line(self.label, self.docs, self.bytes, now - self.start, self.total_bytes))
        if self.record is not None:
            state = {
                "docs": self.docs,
                "bytes": self.bytes,
                "total_bytes": self.total_bytes,
                "done": finished,
            }
            write_json_atomic(self.record, state)

    def done(self) -> None:
        self._emit(time.monotonic(), finished=True)


class TotalProgress:
    """A thread summing the tasks' progress records of one stage into a line every PROGRESS_EVERY_S."""

    def __init__(self, folder: Path, stage: str, tasks: int):
        self.folder, self.stage, self.tasks = Path(folder), stage, tasks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.monotonic()

    def __enter__(self) -> TotalProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY_S):
            docs = nbytes = finished = 0
            total = 0
            for path in self.folder.glob(f"{self.stage}-t*.json"):
                try:
                    state = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                docs, nbytes = docs + state["docs"], nbytes + state["bytes"]
                total += state.get("total_bytes") or 0
                finished += bool(state.get("done"))
            label = f"{self.stage} total ({finished}/{self.tasks} tasks done)"
            log.info(_line(label, docs, nbytes, time.monotonic() - self.start, total or None))

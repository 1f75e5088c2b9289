"""The background checkpoint writer: at most one write in flight, on a thread and a process group of its own.

A save stages the state (a CPU copy of this rank's shards, `state_io.stage`) in the training thread, then hands
the write to this writer and returns: training goes on updating the live tensors while the copy is written.
The write's collectives (DCP's planning and its metadata gather) run on a gloo group made for checkpoints only,
so they never interleave with the training's collectives on the default group (NCCL on GPUs), and DCP finds
the CPU backend it needs for staged tensors. Before the next save, and before anything reads a checkpoint,
the caller waits for the write in flight (`wait`); `poll` reports a finished one without waiting.

On one process there is no group; the write is the same, on the same thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Generic, TypeVar

T = TypeVar("T")


class CheckpointWriter(Generic[T]):
    def __init__(self, distributed: bool, timeout: timedelta | None = None):
        """Every rank creates its writer at the same point (creating the group is a collective)."""
        self.group = None
        if distributed:
            import torch.distributed as dist

            self.group = dist.new_group(backend="gloo", timeout=timeout)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: tuple[Future, T] | None = None

    @property
    def in_flight(self) -> T | None:
        """The tag of the write in flight (or finished but not yet collected), if any."""
        return self._pending[1] if self._pending else None

    @property
    def busy(self) -> bool:
        """A write is running now."""
        return self._pending is not None and not self._pending[0].done()

    def submit(self, write: Callable[[], None], tag: T) -> None:
        """Run `write` in the background; the previous write must have been collected (`wait`)."""
        if self._pending is not None:
            raise RuntimeError("a checkpoint write is still in flight: wait() for it first")
        self._pending = (self._executor.submit(write), tag)

    def poll(self) -> T | None:
        """The finished write's tag (collected now), or None while it is still running or when there is none.
        Raises what the write raised."""
        if self._pending is None or not self._pending[0].done():
            return None
        return self.wait()

    def wait(self) -> T | None:
        """Block until the write in flight has finished; its tag (None when there was none). Raises what the
        write raised (the write is collected either way)."""
        if self._pending is None:
            return None
        future, tag = self._pending
        self._pending = None
        future.result()
        return tag

    def close(self) -> None:
        """Wait for the write in flight (its errors are the caller's), then stop the thread."""
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)

"""The background checkpoint writer: one write in flight at most, reported when finished, errors raised to the
caller that collects it."""

from __future__ import annotations

import threading

import pytest

from pretrain.train.parallel.async_save import CheckpointWriter


def test_a_write_runs_in_the_background_and_is_collected_once():
    writer: CheckpointWriter[str] = CheckpointWriter(distributed=False)
    release, ran_on = threading.Event(), []

    def write() -> None:
        ran_on.append(threading.current_thread().name)
        release.wait(timeout=30)

    writer.submit(write, "step-4")
    assert writer.in_flight == "step-4" and writer.busy
    assert writer.poll() is None  # still writing: the caller trains on
    with pytest.raises(RuntimeError, match="still in flight"):
        writer.submit(write, "step-8")
    release.set()
    assert writer.wait() == "step-4"
    assert writer.in_flight is None and not writer.busy and writer.wait() is None and writer.poll() is None
    assert ran_on and ran_on[0].startswith("checkpoint-writer")
    writer.close()


def test_a_failed_write_raises_where_it_is_collected():
    writer: CheckpointWriter[int] = CheckpointWriter(distributed=False)

    def write() -> None:
        raise OSError(28, "No space left on device")

    writer.submit(write, 4)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    assert writer.in_flight is None  # collected: the next save may start
    writer.submit(lambda: None, 8)
    writer.close()  # waits for it
    assert writer.in_flight is None

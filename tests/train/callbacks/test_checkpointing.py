"""Checkpoints on the loop: every `every_steps` (or `every_fraction` of training), at a stop and at the end;
each, once complete on disk, becomes the last good checkpoint, is logged as a `checkpoint` event and, with a
pusher, uploaded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pretrain.config.train import CheckpointConfig, StabilityConfig
from pretrain.train.callbacks.base import StepOutput
from pretrain.train.callbacks.checkpointing import Checkpointing
from pretrain.train.metrics import EVENT_CHECKPOINT, MetricsLog, read_records
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainState

OUT = StepOutput(loss=3.0, grad_norm=1.0, data_wait_s=0.0)


class Checkpointer:
    """The real one's contract: a save is in flight until a later poll (or a wait) finds it complete."""

    def __init__(self, root: Path):
        self.root, self.saved, self.pending, self.on_complete, self.closed = root, [], None, None, False

    def save(self, state: TrainState) -> Path:
        self.finish()
        self.saved.append(state.step)
        self.pending = (state.step, self.root / f"step-{state.step:07d}")
        return self.pending[1]

    def poll(self) -> None:
        self.finish()  # a write is always done by the next step here

    def finish(self) -> None:
        if self.pending is not None:
            done, self.pending = self.pending, None
            self.on_complete(*done)

    def close(self) -> None:
        self.finish()
        self.closed = True


class Pusher:
    def __init__(self):
        self.submitted, self.closed = [], False

    def submit(self, folder: Path, branch: str) -> None:
        self.submitted.append((folder, branch))

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def make(tmp_path):
    """make(total_steps, pusher=None, **checkpoint) -> (callback, checkpointer, metrics log)."""

    def build(total_steps: int, pusher=None, **checkpoint):
        cfg = CheckpointConfig(**checkpoint)
        setup = SimpleNamespace(
            recipe=SimpleNamespace(train=SimpleNamespace(checkpoint=cfg)), total_steps=total_steps
        )
        metrics = MetricsLog(tmp_path / "metrics.jsonl", SimpleNamespace(trackers=[]), enabled=True)
        checkpointer = Checkpointer(tmp_path / "checkpoints")
        return Checkpointing(setup, metrics, checkpointer, pusher), checkpointer, metrics

    return build


def train(callback, steps, stop_at: int | None = None) -> TrainState:
    state = TrainState(SpikeGuard(StabilityConfig()))
    callback.on_train_start(state)
    for step in steps:
        state.step = step
        state.stopping = step == stop_at
        callback.on_step_end(state, OUT)
    return state


def test_every_n_steps_and_at_the_end(make):
    callback, checkpointer, _ = make(10, every_steps=3)
    train(callback, range(1, 11))
    assert checkpointer.saved == [3, 6, 9, 10]


def test_every_steps_wins_over_every_fraction(make):
    callback, checkpointer, _ = make(10, every_steps=5, every_fraction=0.1)
    train(callback, range(1, 11))
    assert checkpointer.saved == [5, 10]


def test_at_each_fraction_of_training(make):
    callback, checkpointer, _ = make(8, every_fraction=0.25)
    train(callback, range(1, 9))
    assert checkpointer.saved == [2, 4, 6, 8]


def test_with_neither_cadence_only_at_the_end(make):
    callback, checkpointer, _ = make(6, every_fraction=None)
    train(callback, range(1, 7))
    assert checkpointer.saved == [6]


def test_a_stop_forces_a_checkpoint_at_that_step(make):
    callback, checkpointer, _ = make(10, every_steps=5)
    train(callback, range(1, 8), stop_at=7)
    assert checkpointer.saved == [5, 7]


def test_each_checkpoint_becomes_the_last_good_one_and_is_logged_once_complete(make, tmp_path):
    callback, checkpointer, metrics = make(4, every_steps=2)
    state = train(callback, range(1, 5))
    assert state.last_good == tmp_path / "checkpoints" / "step-0000002"  # step 4's write is still in flight
    callback.on_train_end()
    assert checkpointer.closed and state.last_good == tmp_path / "checkpoints" / "step-0000004"
    logged = [
        (r["step"], r["path"]) for r in read_records(metrics.path) if r.get("event") == EVENT_CHECKPOINT
    ]
    assert logged == [
        (2, str(tmp_path / "checkpoints" / "step-0000002")),
        (4, str(tmp_path / "checkpoints" / "step-0000004")),
    ]


def test_steps_between_checkpoints_write_nothing(make):
    callback, checkpointer, metrics = make(10, every_steps=5)
    train(callback, [1, 2, 3, 4])
    assert checkpointer.saved == [] and read_records(metrics.path) == []


def test_with_a_pusher_each_checkpoint_is_uploaded_to_its_step_branch(make, tmp_path):
    pusher = Pusher()
    callback, _, _ = make(4, pusher=pusher, every_steps=2)
    train(callback, range(1, 5))
    assert pusher.submitted == [(tmp_path / "checkpoints" / "step-0000002", "step-0000002")]
    assert not pusher.closed
    callback.on_train_end()  # the last write completes, is pushed, then the pusher closes
    assert pusher.submitted[-1] == (tmp_path / "checkpoints" / "step-0000004", "step-0000004")
    assert pusher.closed


def test_without_a_pusher_the_end_of_training_closes_the_checkpointer_only(make):
    callback, checkpointer, _ = make(4, every_steps=2)
    callback.on_train_start(TrainState(SpikeGuard(StabilityConfig())))
    callback.on_train_end()
    assert checkpointer.closed

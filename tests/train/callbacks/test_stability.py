"""The spike guard on the loop: a bad step's update is skipped (with a `skip` event), and spikes that persist
roll back to the last good checkpoint, moving the data past the bad window."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from pretrain.config.train import StabilityConfig
from pretrain.train.callbacks.base import StepOutput
from pretrain.train.callbacks.stability import SpikeGuardCallback
from pretrain.train.checkpoint import COMPLETE, TRAINER_STATE, WEIGHTS
from pretrain.train.metrics import EVENT_ROLLBACK, EVENT_SKIP, MetricsLog, read_records
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainingError, TrainState


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def warnings():
    handler = Warnings()
    logger = logging.getLogger("pretrain.train")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


class Checkpointer:
    """Restores a checkpoint's counters as the real one does (its step from the folder name)."""

    def __init__(self, root: Path):
        self.root, self.restored = root, []
        self.in_flight = None  # what a save in flight does once complete (the real one: last_good)

    def finish(self) -> None:
        if self.in_flight is not None:
            done, self.in_flight = self.in_flight, None
            done()

    def restore(self, folder: Path, state: TrainState, with_data: bool) -> None:
        self.restored.append((folder, with_data))
        state.step = state.tokens_seen = int(folder.name.removeprefix("step-"))
        state.last_good = folder


class Loader:
    data_step = 5  # global batches drawn (the skipped step's is the one before)

    def __init__(self):
        self.skipped = 0  # whole optimizer steps (a stage's micro steps may differ: steps are the unit)

    def skip_steps(self, steps: int) -> None:
        self.skipped += steps


@pytest.fixture()
def make(tmp_path):
    """make(**stability) -> (callback, state, metrics log, checkpointer, loader)."""

    def build(**settings):
        cfg = StabilityConfig(**{"window": 5, "min_history": 3, "grad_norm_zscore": None, **settings})
        loader = Loader()
        setup = SimpleNamespace(
            recipe=SimpleNamespace(train=SimpleNamespace(stability=cfg)),
            train_iter=loader,
            # a process other than the main one: it names the data step, the main one also the documents
            accelerator=SimpleNamespace(is_main_process=False),
        )
        metrics = MetricsLog(tmp_path / "metrics.jsonl", SimpleNamespace(trackers=[]), enabled=True)
        checkpointer = Checkpointer(tmp_path / "checkpoints")
        callback = SpikeGuardCallback(setup, metrics, checkpointer)
        return callback, TrainState(SpikeGuard(cfg)), metrics, checkpointer, loader

    return build


def out(loss: float, grad_norm: float = 1.0) -> StepOutput:
    return StepOutput(loss=loss, grad_norm=grad_norm, data_wait_s=0.0)


def events(metrics: MetricsLog, kind: str) -> list[dict]:
    return [r for r in read_records(metrics.path) if r.get("event") == kind]


def warm_up(callback, state, losses=(3.0, 3.1, 2.9, 3.0, 3.05)) -> None:
    for loss in losses:
        assert callback.pre_optim_step(state, out(loss)) is None
        state.step += 1


def test_a_normal_step_is_applied_and_logs_nothing(make, warnings):
    callback, state, metrics, _, _ = make()
    warm_up(callback, state)
    assert events(metrics, EVENT_SKIP) == [] and warnings == []


def test_a_non_finite_loss_is_skipped_with_a_skip_event_at_the_step_being_taken(make, warnings):
    callback, state, metrics, _, _ = make()
    state.step = 5
    assert callback.pre_optim_step(state, out(float("nan"), 2.5)) == "non_finite"
    (event,) = events(metrics, EVENT_SKIP)
    assert event["step"] == 6 and event["reason"] == "non_finite" and event["grad_norm"] == 2.5
    assert math.isnan(event["loss"])
    assert event["data_step"] == 4
    assert warnings == [
        "step 6: update skipped (non_finite, loss nan, grad norm 2.5); its batch: data step 4 (documents on "
        "the main process's log)"
    ]


def test_a_loss_spike_is_skipped_with_its_z_score(make):
    callback, state, metrics, _, _ = make()
    warm_up(callback, state)
    reason = callback.pre_optim_step(state, out(30.0))
    assert reason is not None and reason.startswith("spike(z=")
    assert [e["reason"] for e in events(metrics, EVENT_SKIP)] == [reason]
    assert events(metrics, EVENT_SKIP)[0]["loss"] == 30.0


def test_the_verdict_is_the_guards(make):
    callback, state, _, _, _ = make()
    reference = SpikeGuard(state.guard.cfg)
    for loss in (3.0, 3.1, 2.9, 3.0, 9.0, float("inf"), 3.0):
        assert callback.pre_optim_step(state, out(loss)) == reference.check(loss, 1.0)


def test_a_disabled_guard_applies_every_update(make):
    callback, state, metrics, _, _ = make(enabled=False)
    assert callback.pre_optim_step(state, out(float("nan"))) is None
    assert events(metrics, EVENT_SKIP) == []


def test_a_skipped_update_below_the_rollback_threshold_is_not_undone(make, tmp_path):
    callback, state, metrics, checkpointer, _ = make(spikes_before_rollback=2)
    state.last_good = tmp_path / "step-0000004"
    assert callback.pre_optim_step(state, out(float("nan"))) == "non_finite"
    state.step += 1
    assert callback.on_update_skipped(state, out(float("nan"))) is False
    assert checkpointer.restored == [] and events(metrics, EVENT_ROLLBACK) == []


def test_persistent_spikes_roll_back_to_the_last_good_checkpoint(make, tmp_path, warnings):
    callback, state, metrics, checkpointer, loader = make(spikes_before_rollback=2, skip_window_steps=3)
    target = tmp_path / "checkpoints" / "step-0000004"
    state.step, state.tokens_seen, state.last_good = 7, 7000, target
    for _ in range(2):
        callback.pre_optim_step(state, out(float("nan")))
    assert state.guard.wants_rollback
    assert callback.on_update_skipped(state, out(float("nan"))) is True
    assert checkpointer.restored == [(target, False)]  # the loader stays where it is
    assert loader.skipped == 3  # skip_window_steps optimizer steps
    assert (state.step, state.tokens_seen) == (4, 7000)  # consumed tokens still count
    assert state.guard.consecutive == 0 and state.guard.rollbacks == 1
    (event,) = events(metrics, EVENT_ROLLBACK)
    assert (event["step"], event["from_step"], event["to"], event["rollbacks"]) == (4, 7, str(target), 1)
    assert event["data_step"] == 4 and event["skipped_data_steps"] == 3  # the bad batch, and the skip past it
    assert warnings[-1] == (
        f"rolled back from step 7 to {target} (rollback 1 of 3); the data skipped past the batch of data step 4 "
        "(documents on the main process's log)"
    )


def test_without_a_checkpoint_of_this_process_the_newest_complete_one_on_disk_is_used(make, tmp_path):
    callback, state, _, checkpointer, _ = make(spikes_before_rollback=1)
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / "checkpoints" / f"step-{step:07d}"
        (folder / TRAINER_STATE).mkdir(parents=True)
        (folder / WEIGHTS).write_text("w")
        if complete:
            (folder / TRAINER_STATE / COMPLETE).write_text("")
    state.step = 7
    callback.pre_optim_step(state, out(float("nan")))
    assert callback.on_update_skipped(state, out(float("nan"))) is True
    assert checkpointer.restored == [(tmp_path / "checkpoints" / "step-0000004", False)]


def test_a_save_in_flight_completes_before_the_rollback_picks_its_target(make, tmp_path):
    callback, state, _, checkpointer, _ = make(spikes_before_rollback=1)
    state.step, state.last_good = 9, tmp_path / "checkpoints" / "step-0000004"
    newest = tmp_path / "checkpoints" / "step-0000008"
    checkpointer.in_flight = lambda: setattr(state, "last_good", newest)
    callback.pre_optim_step(state, out(float("nan")))
    assert callback.on_update_skipped(state, out(float("nan"))) is True
    assert checkpointer.restored == [(newest, False)]


def test_spikes_before_any_checkpoint_stop_training(make):
    callback, state, _, checkpointer, _ = make(spikes_before_rollback=1)
    state.step = 3
    callback.pre_optim_step(state, out(float("nan")))
    with pytest.raises(
        TrainingError, match="loss spiked at step 3 before any checkpoint existed; lower the lr"
    ):
        callback.on_update_skipped(state, out(float("nan")))
    assert checkpointer.restored == []


def test_spikes_after_the_last_allowed_rollback_stop_training(make, tmp_path):
    callback, state, _, checkpointer, _ = make(spikes_before_rollback=1, max_rollbacks=1)
    state.last_good, state.step = tmp_path / "checkpoints" / "step-0000002", 5
    state.guard.rollbacks = 1
    callback.pre_optim_step(state, out(float("nan")))
    with pytest.raises(TrainingError) as info:
        callback.on_update_skipped(state, out(float("nan")))
    assert "1 rollbacks were already used (train.stability.max_rollbacks)" in str(info.value)
    assert checkpointer.restored == []


def test_no_rollbacks_allowed_means_the_first_persistent_spike_stops_training(make, tmp_path):
    callback, state, _, _, _ = make(spikes_before_rollback=1, max_rollbacks=0)
    state.last_good = tmp_path / "checkpoints" / "step-0000002"
    callback.pre_optim_step(state, out(float("nan")))
    with pytest.raises(TrainingError, match="max_rollbacks"):
        callback.on_update_skipped(state, out(float("nan")))

"""The trainer's progress counters: what a checkpoint's `state.json` holds and what a resume puts back."""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.config.train import StabilityConfig
from pretrain.core.errors import PretrainError
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainingError, TrainState


def guard(**cfg) -> SpikeGuard:
    return SpikeGuard(StabilityConfig(window=5, min_history=2, **cfg))


def test_a_new_run_starts_at_zero_and_is_not_stopping():
    state = TrainState(guard())
    assert (state.step, state.tokens_seen, state.attempts) == (0, 0, 0)
    assert state.last_good is None and state.stopping is False


def test_the_state_dict_holds_the_counters_the_guard_and_the_run_geometry():
    g = guard()
    for loss in (3.0, 2.9, 2.8):
        g.check(loss, 1.0)
    g.skipped, g.rollbacks = 2, 1
    state = TrainState(g, step=3, tokens_seen=3 * 4096, attempts=5)
    assert state.state_dict(world_size=2, total_steps=400) == {
        "step": 3,
        "tokens_seen": 12288,
        "guard": g.state_dict(),
        "world_size": 2,
        "total_steps": 400,
    }
    assert g.state_dict()["history"] == [3.0, 2.9, 2.8]


def test_loading_puts_back_the_counters_and_the_guard_and_remembers_the_checkpoint(tmp_path):
    g = guard()
    for loss in (3.0, 2.9):
        g.check(loss, 1.0)
    saved = json.loads(json.dumps(TrainState(g, step=2, tokens_seen=8192).state_dict(1, 10)))
    state = TrainState(guard(), step=7, tokens_seen=99, attempts=9)
    state.load_state_dict(saved, tmp_path / "step-0000002")
    assert (state.step, state.tokens_seen) == (2, 8192)
    assert list(state.guard.history) == [3.0, 2.9]
    assert state.last_good == tmp_path / "step-0000002"


def test_loading_does_not_rewind_the_attempts_or_a_stop():
    state = TrainState(guard(), step=7, attempts=9, stopping=True)
    state.load_state_dict(TrainState(guard(), step=2).state_dict(1, 10), Path("ckpt"))
    assert state.attempts == 9 and state.stopping is True


def test_rollbacks_already_used_by_this_process_stay_counted():
    state = TrainState(guard())
    state.guard.rollbacks = 2
    older = TrainState(guard())
    older.guard.rollbacks = 1
    state.load_state_dict(older.state_dict(1, 10), Path("ckpt"))
    assert state.guard.rollbacks == 2


def test_rollbacks_recorded_in_the_checkpoint_are_kept_when_more():
    state = TrainState(guard())
    saved = TrainState(guard())
    saved.guard.rollbacks = 3
    state.load_state_dict(saved.state_dict(1, 10), Path("ckpt"))
    assert state.guard.rollbacks == 3


def test_a_checkpoint_of_another_world_size_loads_the_same_counters():
    saved = TrainState(guard(), step=4, tokens_seen=4096).state_dict(world_size=8, total_steps=10)
    state = TrainState(guard())
    state.load_state_dict(saved, Path("ckpt"))
    assert (state.step, state.tokens_seen) == (4, 4096)


def test_a_training_error_is_a_user_error():
    assert issubclass(TrainingError, PretrainError)

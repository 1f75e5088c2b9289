"""Schedule shapes: warmup, WSD plateau and decay, cosine and linear ends."""

from __future__ import annotations

import functools

import pytest

from pretrain.config.optimizer import ScheduleConfig
from pretrain.train.schedules import lr_multiplier, warmup_steps


def curve(name, total=100, **kw):
    cfg = ScheduleConfig(name=name, **kw)
    return [lr_multiplier(s, total, cfg) for s in range(total)]


def test_warmup_is_linear_to_peak():
    c = curve("wsd", warmup_steps=10)
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(c[:9], c[1:10]))


def test_wsd_plateau_then_linear_decay_to_floor():
    c = curve("wsd", warmup_steps=5, decay_fraction=0.2, min_lr_ratio=0.1)
    assert all(v == 1.0 for v in c[5:80])
    assert all(a > b for a, b in zip(c[80:], c[81:]))
    assert c[-1] == pytest.approx(0.1)


def test_cosine_and_linear_end_at_floor():
    for name in ("cosine", "linear"):
        c = curve(name, warmup_steps=10, min_lr_ratio=0.0)
        assert c[10] < 1.0 and c[-1] == pytest.approx(0.0, abs=1e-9)
        assert all(a >= b for a, b in zip(c[10:], c[11:]))
    cos = curve("cosine", warmup_steps=0)
    assert cos[50] == pytest.approx(0.5, abs=0.02)


def test_warmup_fraction():
    c = curve("constant", warmup_fraction=0.2)
    assert c[19] == 1.0 and c[18] < 1.0


@pytest.mark.parametrize(("total", "warmup", "decay", "floor"), [(400, 0.05, 0.3, 0.0), (97, 0.1, 0.2, 0.1)])
def test_wsd_is_transformers_get_wsd_schedule_one_step_ahead(total, warmup, decay, floor):
    """Issue #31 asked to use `transformers.get_wsd_schedule` or show why ours stays. Measured here: ours at step
    s is exactly transformers' at s + 1. Transformers' first update runs at lr 0 (min_lr_ratio x peak: a wasted
    step) and its last decay step stops one step short of the floor; ours starts at peak/warmup and ends on the
    floor. Ours also stays a plain function of (step, total steps) — preflight, anneal and the forecast's phase
    read it without an optimizer."""
    from transformers.optimization import _get_wsd_scheduler_lambda

    cfg = ScheduleConfig(name="wsd", warmup_fraction=warmup, decay_fraction=decay, min_lr_ratio=floor)
    warm = warmup_steps(cfg, total)
    decay_steps = max(1, int(round(decay * total)))
    theirs = functools.partial(
        _get_wsd_scheduler_lambda,
        num_warmup_steps=warm,
        num_stable_steps=total - decay_steps - warm,
        num_decay_steps=decay_steps,
        warmup_type="linear",
        decay_type="linear",
        min_lr_ratio=floor,
        num_cycles=0.5,
    )
    assert theirs(0) == floor and lr_multiplier(0, total, cfg) == 1 / warm
    # (transformers' warmup rises from the floor, ours from 0: equal in the warmup when the floor is 0)
    for step in range(0 if floor == 0 else warm - 1, total):
        assert lr_multiplier(step, total, cfg) == pytest.approx(theirs(step + 1), abs=1e-12), step
    assert lr_multiplier(total - 1, total, cfg) == pytest.approx(floor) and theirs(total - 1) > floor + 1e-6

"""Schedule shapes: warmup, WSD plateau and decay, cosine and linear ends."""

from __future__ import annotations

import pytest

from pretrain.config.optimizer import ScheduleConfig
from pretrain.train.schedules import lr_multiplier


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

"""The proxies' and rungs' lr rule: AdamW lr x sqrt(width ratio), capped at 4x, never below the target's."""

from __future__ import annotations

import pytest

from pretrain.scaling.lr_transfer import adamw_lr_scale, scale_learning_rates


def test_the_rule():
    assert adamw_lr_scale(256, 64) == pytest.approx(2.0)
    assert adamw_lr_scale(4096, 64) == 4.0  # capped: sqrt(64) = 8
    assert adamw_lr_scale(64, 128) == 1.0  # a wider model keeps the target's lr
    raw = {"train": {"optimizer": {"lr": 0.003, "muon": {"lr": 0.01}}}}
    assert scale_learning_rates(raw, 128, 32) == pytest.approx(2.0)
    assert raw["train"]["optimizer"] == {"lr": pytest.approx(0.006), "muon": {"lr": 0.01}}

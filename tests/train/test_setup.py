"""train/setup.py: what the loop is built from (the full build runs in test_training.py)."""

from __future__ import annotations

import pytest

from pretrain.core.errors import PretrainError
from pretrain.testing import run_train_stage
from pretrain.train import trackers


def test_missing_tracker_is_an_error_before_training(fresh_run, monkeypatch):
    """accelerate drops a tracker whose package is missing with a warning; we refuse before any work."""
    monkeypatch.setitem(trackers.TRACKER_MODULES, "wandb", "no_such_tracker_package")
    recipe, out = fresh_run("no_tracker", "train.trackers=[wandb]", "eval.enabled=false")
    with pytest.raises(
        PretrainError, match=r"train.trackers: wandb requested but not installed; `pip install"
    ):
        run_train_stage(recipe)
    assert not recipe.layout.checkpoints.exists()

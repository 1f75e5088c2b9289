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


def _initial_weights_and_loader_seed(recipe):
    from pretrain.train.setup import build_setup

    setup = build_setup(recipe)
    try:
        weights = [p.detach().clone() for p in setup.model.parameters()]
        return weights, setup.train_iter.seed
    finally:
        if setup.lock:
            setup.lock.release()


def test_train_seed_changes_init_and_data_order_but_not_the_data(fresh_run):
    """A replicate run (train.seed) reuses the packed data: the research's seed-9 runs had to re-stamp it."""
    from pretrain.commands.stages import fingerprint, is_current

    base, _ = fresh_run("base", "eval.enabled=false")
    replicate, _ = fresh_run("replicate", "eval.enabled=false", "train.seed=99")
    same, _ = fresh_run("same", "eval.enabled=false", f"train.seed={base.seed}")
    for stage in ("curate", "tokenizer", "pack"):
        assert fingerprint(replicate, stage) == fingerprint(base, stage)
        assert is_current(replicate, stage)
    assert fingerprint(replicate, "train") != fingerprint(base, "train")
    w_base, seed_base = _initial_weights_and_loader_seed(base)
    w_rep, seed_rep = _initial_weights_and_loader_seed(replicate)
    w_same, seed_same = _initial_weights_and_loader_seed(same)
    assert (seed_base, seed_rep, seed_same) == (base.seed, 99, base.seed)
    assert any(not a.equal(b) for a, b in zip(w_base, w_rep))
    assert all(a.equal(b) for a, b in zip(w_base, w_same))

"""train/trackers.py: tracker packages checked before training, and the recipe as flat hyperparameters."""

from __future__ import annotations

from pretrain.testing import run_train_stage
from pretrain.train import trackers


def test_tensorboard_gets_the_resolved_recipe_in_the_run_folder(fresh_run):
    recipe, out = fresh_run("tb", "train.trackers=[tensorboard]", "eval.enabled=false", "train.tokens=2048")
    run_train_stage(recipe)
    events = list(recipe.layout.trackers.rglob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in out.iterdir())
    flat = trackers.flat_recipe(recipe)
    assert flat["train.optimizer.lr"] == recipe.train.optimizer.lr and flat["name"] == recipe.name
    assert all(isinstance(v, str | int | float | bool) for v in flat.values())

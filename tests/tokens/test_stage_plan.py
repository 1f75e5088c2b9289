"""A loader stage's geometry: the loader's own where the stage sets none (a micro batch of as many tokens), and
one clear error when the global batch is not a whole number of the stage's micro batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.config.train import TrainConfig
from pretrain.core.errors import DataError
from pretrain.tokens.stage_plan import LoaderStage, loader_stages

HERE = Path("tokens")


def test_unset_geometry_is_the_loaders_with_the_same_tokens_per_micro_batch():
    stage = LoaderStage("long", 10, {"web": 1.0}, seq_len=64).resolved(16, 8, False, 256, 1, HERE)
    assert (stage.seq_len, stage.batch_size, stage.document_positions) == (64, 2, False)
    base = LoaderStage("short", 5, {"web": 1.0}).resolved(16, 8, True, 256, 2, HERE)
    assert (base.seq_len, base.batch_size, base.document_positions) == (16, 8, True)


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(
        DataError, match=r"tokens: stage 'long': a global batch of 256 tokens is not a whole number"
    ):
        LoaderStage("long", 10, {"web": 1.0}, seq_len=48).resolved(16, 8, False, 256, 1, HERE)
    with pytest.raises(DataError, match=r"micro batches of 2 x 64 tokens x 4 processes"):
        LoaderStage("long", 10, {"web": 1.0}, seq_len=64).resolved(16, 8, False, 256, 4, HERE)


def test_recipe_stages_carry_their_end_steps_and_geometry():
    cfg = TrainConfig.model_validate(
        {
            "seq_len": 16,
            "micro_batch_size": 8,
            "global_batch_tokens": 256,
            "steps": 10,
            "data_stages": [
                {"share": 0.8, "weights": {"web": 3, "code": 1}},
                {"name": "long", "share": 0.2, "seq_len": 64, "weights": {"code": 1}},
            ],
        }
    )
    assert loader_stages(cfg, 10) == [
        LoaderStage("stage-0", 8, {"web": 0.75, "code": 0.25}, 16, 8, False),
        LoaderStage("long", 10, {"code": 1.0}, 64, 2, True),
    ]

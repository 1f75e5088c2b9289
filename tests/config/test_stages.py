"""A data stage's geometry: what it leaves unset carries over from the stage before (a context stays extended),
its micro batch keeps the tokens of a forward pass, and a longer stage masks documents unless told not to."""

from __future__ import annotations

from pretrain.config.stages import StageGeometry, stage_geometries
from pretrain.config.train import TrainConfig

W = {"web": 1.0}


def _train(*stages, **train) -> TrainConfig:
    base = {"seq_len": 256, "micro_batch_size": 16, "global_batch_tokens": 4096, "steps": 10}
    return TrainConfig.model_validate({**base, **train, "data_stages": list(stages)})


def test_unset_fields_carry_over_and_a_long_stage_keeps_the_tokens_per_forward_pass():
    cfg = _train(
        {"share": 0.6, "weights": W},
        {"share": 0.2, "weights": W, "seq_len": 1024, "rope_theta": 40000.0},
        {"share": 0.2, "weights": W, "rope_scaling": {"rope_type": "linear", "factor": 2.0}},
    )
    assert stage_geometries(cfg) == [
        StageGeometry(256, 16, False),
        StageGeometry(1024, 4, True, 40000.0),
        StageGeometry(1024, 4, True, 40000.0, {"rope_type": "linear", "factor": 2.0}),
    ]
    assert stage_geometries(cfg)[2].rope == {"rope_type": "linear", "factor": 2.0, "rope_theta": 40000.0}
    assert stage_geometries(cfg)[0].rope is None


def test_explicit_micro_batch_and_masking_win():
    cfg = _train(
        {"share": 0.5, "weights": W},
        {"share": 0.5, "weights": W, "seq_len": 4096, "micro_batch_size": 1, "document_masking": False},
        document_masking=True,
    )
    assert stage_geometries(cfg) == [StageGeometry(256, 16, True), StageGeometry(4096, 1, False)]


def test_no_stages_no_geometries():
    assert stage_geometries(_train()) == []

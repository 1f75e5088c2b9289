"""The target: a normalised weighted mean of per-source val and benchmark bits/byte."""

from __future__ import annotations

import numpy as np

from pretrain.scaling.mixture.target import Target, measured_components


def test_weights_are_normalised_and_zero_weights_dropped():
    t = Target.of({"web": 1.0, "code": 0.0}, {"arc_easy": 3.0})
    assert t.weights == {"val/web": 0.25, "rc/arc_easy": 0.75}
    assert t.value({"val/web": 2.0, "rc/arc_easy": 4.0, "val/code": 9.0}) == 3.5
    assert np.allclose(t.aggregate(np.array([[2.0, 4.0], [1.0, 1.0]])), [3.5, 1.0])


def test_components_are_read_from_validation_and_eval_records():
    validation = {
        "val/loss": 3.0,
        "val/bpb": 1.5,
        "val/web/bpb": 1.7,
        "val/web/loss": 3.3,
        "val/code/bpb": None,
    }
    evaluation = {"eval/arc_easy/rc_bpb": 2.5, "eval/arc_easy/acc": 0.3}
    assert measured_components(validation, evaluation) == {"val/web": 1.7, "rc/arc_easy": 2.5}

"""Share bounds: a band around the prior, capped by repetition at the full run; impossible bounds are one error."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.core.errors import MixtureError
from pretrain.scaling.mixture.bounds import mix_bounds


def test_band_floor_and_repetition_cap():
    b = mix_bounds(
        {"web": 6, "code": 3, "small": 1}, {"web": 10**9, "code": 10**9, "small": 150}, 1000, 4.0, 2.0, 0.02
    )
    assert b.sources == ("web", "code", "small") and np.allclose(b.prior, [0.6, 0.3, 0.1])
    assert np.allclose(b.low, [0.3, 0.15, 0.05]) and np.allclose(b.high, [1.0, 0.6, 0.2])
    tight = mix_bounds(
        {"web": 6, "code": 3, "small": 1}, {"web": 10**9, "code": 10**9, "small": 15}, 1000, 4.0, 2.0, 0.02
    )
    assert np.isclose(tight.high[2], 0.06)  # 4 x 15 tokens of 1000
    assert tight.contains(np.array([[0.6, 0.35, 0.05], [0.5, 0.3, 0.2]])).tolist() == [True, False]


def test_a_source_too_small_for_any_share_is_one_error_naming_it():
    with pytest.raises(MixtureError, match=r"source 'small' has 10 train tokens.*mixture.max_repetition"):
        mix_bounds(
            {"web": 6, "code": 3, "small": 1},
            {"web": 10**9, "code": 10**9, "small": 10},
            1000,
            4.0,
            2.0,
            0.02,
        )


def test_bounds_no_mix_can_meet_are_one_error():
    with pytest.raises(MixtureError, match="no mix fits the bounds"):
        mix_bounds({"a": 1, "b": 1}, {"a": 100, "b": 100}, 1000, 4.0, 2.0, 0.0)  # at most 0.4 + 0.4
    with pytest.raises(MixtureError, match="at least 2 sources"):
        mix_bounds({"a": 1}, {"a": 100}, 1000, 4.0, 2.0, 0.0)

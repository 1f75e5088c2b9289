"""Proxy mixes: the prior first, then Dirichlet draws inside the bounds, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.core.errors import MixtureError
from pretrain.scaling.mixture.bounds import mix_bounds
from pretrain.scaling.mixture.candidates import box_samples, draw_candidates

BOUNDS = mix_bounds({"a": 5, "b": 3, "c": 2}, {"a": 10**6, "b": 10**6, "c": 10**6}, 10**5, 4.0, 2.0, 0.02)


def test_prior_first_then_draws_inside_the_bounds():
    mixes = draw_candidates(BOUNDS, 12, concentration=10.0, seed=3)
    assert mixes.shape == (12, 3) and np.allclose(mixes[0], [0.5, 0.3, 0.2])
    assert np.allclose(mixes.sum(1), 1) and BOUNDS.contains(mixes).all()
    assert len({tuple(np.round(m, 6)) for m in mixes}) == 12
    assert np.array_equal(mixes, draw_candidates(BOUNDS, 12, concentration=10.0, seed=3))
    assert not np.array_equal(mixes, draw_candidates(BOUNDS, 12, concentration=10.0, seed=4))


def test_bounds_the_draws_cannot_reach_are_one_error(monkeypatch):
    from pretrain.scaling.mixture import candidates

    monkeypatch.setattr(candidates, "MAX_DRAWS", 4096)
    tight = mix_bounds({"a": 5, "b": 3, "c": 2}, {"a": 10**6, "b": 10**6, "c": 10**6}, 10**5, 4.0, 1.01, 0.0)
    with pytest.raises(MixtureError, match="raise mixture.concentration"):
        draw_candidates(tight, 50, concentration=1.0, seed=0)


def test_box_samples_fill_a_tight_band_without_rejection():
    prior = {f"s{i}": w for i, w in enumerate([0.03, 0.05, 0.3, 0.2, 0.2, 0.15, 0.07])}
    bounds = mix_bounds(prior, dict.fromkeys(prior, 10**9), 10**6, 4.0, 2.0, 0.02)
    w = box_samples(bounds, 5000, np.random.default_rng(0))
    assert np.allclose(w.sum(1), 1) and bounds.contains(w).all()
    # they reach near both ends of every source's range
    assert np.all(w.min(0) < bounds.low + 0.25 * (bounds.high - bounds.low))
    assert np.all(w.max(0) > bounds.high - 0.5 * (bounds.high - bounds.low))

"""The proposal: with a fitted model of a known optimum, the proposed mix is that optimum, inside the bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from pretrain.scaling.mixture.bounds import mix_bounds
from pretrain.scaling.mixture.candidates import draw_candidates
from pretrain.scaling.mixture.optimise import propose_mix
from pretrain.scaling.mixture.regression import LAW, fit_mixture_model

TRUE = [
    (1.5, 0.6, np.array([-3.0, 0.5, 0.5])),
    (1.2, 0.4, np.array([0.2, -4.0, 0.2])),
    (2.0, 0.2, np.array([0.0, 0.0, -2.5])),
]
WEIGHTS = np.array([0.2, 0.5, 0.3])


def true_target(X):
    X = np.atleast_2d(X)
    return np.stack([c + np.exp(k + X @ t) for c, k, t in TRUE], axis=1) @ WEIGHTS


def known_optimum(bounds):
    """The true target's minimum on the simplex within the bounds, from many starts (the known answer)."""
    best = None
    for start in np.random.default_rng(9).dirichlet(np.ones(3), 20):
        start = np.clip(start, bounds.low, bounds.high)
        r = optimize.minimize(
            lambda w: true_target(w)[0],
            start / start.sum(),
            method="SLSQP",
            bounds=list(zip(bounds.low, bounds.high)),
            constraints=({"type": "eq", "fun": lambda w: w.sum() - 1},),
        )
        if best is None or r.fun < best.fun:
            best = r
    return best.x, best.fun


def test_the_proposal_is_the_known_optimum_and_predicts_its_target():
    bounds = mix_bounds({"a": 5, "b": 3, "c": 2}, {"a": 10**9, "b": 10**9, "c": 10**9}, 10**6, 4.0, 2.5, 0.02)
    X = draw_candidates(bounds, 12, concentration=8.0, seed=0)
    Y = np.stack([c + np.exp(k + X @ t) for c, k, t in TRUE], axis=1)
    model = fit_mixture_model(X, Y, WEIGHTS, ["val/a", "val/b", "rc/t"], kinds=(LAW,))
    w, predicted = propose_mix(model, bounds, concentration=8.0, n_candidates=4000)
    optimum, best = known_optimum(bounds)
    # 12 noiseless proxies inside the band do not pin the laws down exactly: the proposal is near the optimum,
    # and its true target gets > 90% of the gain the optimum has over the prior
    gain = true_target(bounds.prior)[0] - best
    assert gain > 0.03 and np.abs(w - optimum).sum() < 0.1, (w, optimum)
    assert true_target(w)[0] - best < 0.1 * gain
    assert abs(predicted - true_target(w)[0]) / best < 0.005 and bounds.contains(w, slack=1e-6)[0]
    assert np.abs(optimum - bounds.prior).sum() > 0.1  # the optimum is not the prior itself


@pytest.mark.slow  # LightGBM leave-one-out fits / matplotlib: seconds on 2 busy cores
def test_a_piecewise_model_proposes_a_mean_of_top_candidates_inside_the_bounds():
    bounds = mix_bounds({"a": 5, "b": 3, "c": 2}, {"a": 10**9, "b": 10**9, "c": 10**9}, 10**6, 4.0, 2.5, 0.02)
    X = draw_candidates(bounds, 16, concentration=8.0, seed=0)
    Y = np.stack([c + np.exp(k + X @ t) for c, k, t in TRUE], axis=1)
    model = fit_mixture_model(X, Y, WEIGHTS, ["val/a", "val/b", "rc/t"], kinds=("lightgbm",))
    w, _ = propose_mix(model, bounds, concentration=8.0, n_candidates=2000)
    assert bounds.contains(w, slack=1e-9)[0] and np.isclose(w.sum(), 1)
    assert true_target(w)[0] < true_target(bounds.prior)[0]

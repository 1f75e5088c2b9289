"""The fit on synthetic proxies whose components follow known laws: it recovers them and ranks held-out proxies."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.scaling.mixture.regression import GBM, LAW, GradientBoosted, LogLinearLaw, fit_mixture_model

# three components, each c + exp(k + t·w): a source's own val bits/byte falls as its share grows
TRUE = [
    (1.5, 0.6, np.array([-3.0, 0.5, 0.5])),
    (1.2, 0.4, np.array([0.2, -4.0, 0.2])),
    (2.0, 0.2, np.array([0.0, 0.0, -2.5])),
]


def true_components(X: np.ndarray) -> np.ndarray:
    return np.stack([c + np.exp(k + X @ t) for c, k, t in TRUE], axis=1)


def proxies(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(10 * np.array([0.5, 0.3, 0.2]), n)


def test_the_law_recovers_a_log_linear_component():
    X = proxies(20)
    y = true_components(X)[:, 0]
    law = LogLinearLaw().fit(X, y)
    held_out = proxies(50, seed=1)
    assert np.max(np.abs(law.predict(held_out) - true_components(held_out)[:, 0])) < 0.01


def test_lightgbm_ranks_a_monotone_component():
    X = proxies(40)
    y = true_components(X)[:, 1]
    gbm = GradientBoosted().fit(X, y)
    held_out = proxies(50, seed=1)
    rank = np.corrcoef(
        np.argsort(np.argsort(gbm.predict(held_out))), np.argsort(np.argsort(true_components(held_out)[:, 1]))
    )
    assert rank[0, 1] > 0.8


@pytest.mark.slow  # LightGBM leave-one-out fits / matplotlib: seconds on 2 busy cores
def test_each_component_keeps_the_better_kind_and_the_cv_is_reported():
    X = proxies(12)
    Y = true_components(X)
    weights = np.array([0.5, 0.25, 0.25])
    model = fit_mixture_model(X, Y, weights, ["val/a", "val/b", "rc/t"])
    assert model.kinds == [LAW, LAW, LAW]  # noiseless law data: the law's held-out error is the smaller
    assert model.cv["spearman"] > 0.95 and set(model.cv["per_kind"]) == {LAW, GBM}
    assert model.cv["components"]["val/a"]["kind"] == LAW and len(model.cv["loo_target"]) == 12
    held_out = proxies(30, seed=2)
    assert np.max(np.abs(model.predict(held_out) - true_components(held_out) @ weights)) < 0.01
    # on data no law fits (a step), LightGBM is kept for that component
    Y_step = np.column_stack([Y[:, 0], Y[:, 1], np.where(X[:, 0] > np.median(X[:, 0]), 3.0, 2.0)])
    assert fit_mixture_model(X, Y_step, weights, ["val/a", "val/b", "rc/t"]).kinds[2] == GBM

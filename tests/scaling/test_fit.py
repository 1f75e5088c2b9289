"""The scaling-law fitter against Chinchilla's published approach-3 law, on synthetic noisy ladders.

Hoffmann et al. 2022, eq. 10: L(N, D) = 1.69 + 406.4/N^0.34 + 410.7/D^0.28. Points are drawn from it
with 0.5 % multiplicative log-normal noise, the size of seed-to-seed scatter in final losses.

Ladder design: 6 sizes over 1000x (10M..10B, Chinchilla's own ladder spanned 70M..16B) and 6 token
budgets per size over 2.5..80 tokens/param. A narrower ladder cannot pin alpha to 5 % at this noise,
whatever the optimiser: over 20 noise seeds, 5 sizes over 30x with 4-10 budgets of 5..20 tokens/param
gave an rms error in alpha of 8-12 % (E trades off against A/N^alpha), while this design gives ~2.6 %
and meets all three tolerances below on 93-97 % of seeds (40- and 30-seed runs), with ~90 % coverage
of the 5-95 % intervals. Seed 0 is the first seed, not a chosen one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pretrain.core.errors import PretrainError
from pretrain.scaling.fit import (
    PARAMETER_NAMES,
    ScalingFit,
    ScalingLaw,
    _minimise,
    _refit_batch,
    backtest_largest_size,
    compute_optimal,
    fit_scaling_law,
    predict,
    tokens_per_param,
)
from pretrain.scaling.solver import EXPONENT_RANGE, FLOOR_MIN

CHINCHILLA = ScalingLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
NOISE = 0.005
SIZES = np.geomspace(1e7, 1e10, 6)
TOKENS_PER_PARAM = np.geomspace(2.5, 80, 6)


def ladder(seed: int = 0, law: ScalingLaw = CHINCHILLA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    params = np.repeat(SIZES, TOKENS_PER_PARAM.size)
    tokens = params * np.tile(TOKENS_PER_PARAM, SIZES.size)
    noise = np.exp(np.random.default_rng(seed).normal(0.0, NOISE, params.size))
    return params, tokens, law.loss(params, tokens) * noise


@pytest.fixture(scope="module")
def fit() -> ScalingFit:
    return fit_scaling_law(*ladder(), bootstrap=200, seed=0)


def test_recovers_chinchilla_exponents_and_floor(fit):
    assert fit.law.alpha == pytest.approx(CHINCHILLA.alpha, rel=0.05)
    assert fit.law.beta == pytest.approx(CHINCHILLA.beta, rel=0.05)
    assert fit.law.E == pytest.approx(CHINCHILLA.E, rel=0.03)
    # A and B are exp() of intercepts correlated with alpha / beta: loose, but the right magnitude
    assert fit.law.A == pytest.approx(CHINCHILLA.A, rel=0.5)
    assert fit.law.B == pytest.approx(CHINCHILLA.B, rel=0.5)


def test_fit_is_at_least_as_good_as_the_truth(fit):
    """The optimiser found the optimum: no worse than the generating parameters on the same points."""
    params, tokens, losses = ladder()
    residuals = np.log(CHINCHILLA.loss(params, tokens)) - np.log(losses)
    delta = fit.huber_delta
    truth = np.where(np.abs(residuals) <= delta, 0.5 * residuals**2 / delta, np.abs(residuals) - delta / 2)
    assert fit.objective <= truth.mean()


def test_bootstrap_intervals_contain_the_true_parameters(fit):
    assert len(fit.bootstrap) == 200
    for name in PARAMETER_NAMES:
        interval = fit.intervals[name]
        assert interval.low < interval.value < interval.high, name
        assert interval.contains(getattr(CHINCHILLA, name)), (name, interval)
    # informative, not vacuous: alpha's 90 % interval is a few percent wide, not the whole grid
    assert fit.intervals["alpha"].high - fit.intervals["alpha"].low < 0.1 * CHINCHILLA.alpha


def test_batched_bootstrap_refits_reach_the_lbfgs_optimum(fit):
    """Bootstrap refits use vectorised reweighted Gauss-Newton; each must land where L-BFGS-B does."""
    params, tokens, losses = (np.log(x) for x in ladder())
    index = np.random.default_rng(1).integers(0, params.size, (2, params.size))
    start = fit.law.as_vector()
    batched = _refit_batch(
        np.repeat(start[None, :], len(index), axis=0),
        params[index],
        tokens[index],
        losses[index],
        fit.huber_delta,
    )
    for row, resample in zip(batched, index):
        one_at_a_time, _ = _minimise(
            start[None, :], params[resample], tokens[resample], losses[resample], fit.huber_delta
        )
        np.testing.assert_allclose(row, one_at_a_time, atol=1e-4)


@pytest.mark.parametrize("flops", [1e18, 1e21, 5.76e23])
def test_compute_optimal_matches_brute_force_grid_search(fit, flops):
    for law in (CHINCHILLA, fit.law):
        params, tokens = law.compute_optimal(flops)
        assert 6 * params * tokens == pytest.approx(flops, rel=1e-12)
        grid = np.geomspace(1e3, 1e15, 400_001)  # 0.007 % steps in N
        brute_force = grid[np.argmin(law.loss(grid, flops / (6 * grid)))]
        assert params == pytest.approx(brute_force, rel=1e-3)
    optimum = compute_optimal(fit, flops)
    assert optimum.params.value == pytest.approx(fit.law.compute_optimal(flops)[0], rel=1e-12)
    assert optimum.tokens_per_param.value == pytest.approx(optimum.tokens.value / optimum.params.value)
    assert tokens_per_param(fit, flops) == optimum.tokens_per_param
    for estimate in (optimum.params, optimum.tokens, optimum.tokens_per_param, optimum.loss):
        assert estimate.low < estimate.value < estimate.high
    # the fitted optimum is close to the true law's, and the interval says how close
    true_params, _ = CHINCHILLA.compute_optimal(flops)
    assert optimum.params.contains(true_params)


def test_tokens_per_param_at_the_optimum_grows_with_budget_when_beta_is_below_alpha():
    """N_opt grows as C^(beta/(alpha+beta)) = C^0.45 and D_opt as C^0.55: D/N rises with the budget."""
    small, large = (CHINCHILLA.compute_optimal(c) for c in (1e18, 1e24))
    assert small[1] / small[0] < large[1] / large[0]


def test_predict_matches_the_true_law_with_an_interval(fit):
    for params, tokens in [(1e8, 2e9), (3e9, 6e10)]:
        estimate = predict(fit, params, tokens)
        assert estimate.value == pytest.approx(float(CHINCHILLA.loss(params, tokens)), rel=0.01)
        assert estimate.low < estimate.value < estimate.high
        # within the ladder the 90 % band is well under the 0.5 % noise of a single run
        assert estimate.high - estimate.low < 0.01 * estimate.value
    # extrapolating 10x beyond the ladder is less certain than interpolating within it
    inside, outside = predict(fit, 1e9, 2e10), predict(fit, 1e11, 2e12)
    assert outside.high - outside.low > inside.high - inside.low


def test_json_round_trip_keeps_law_intervals_and_predictions(fit):
    text = fit.to_json()
    assert json.loads(text)["law"]["alpha"] == fit.law.alpha
    again = ScalingFit.from_json(text)
    assert again.law == fit.law
    assert again.bootstrap == fit.bootstrap
    assert again.intervals == fit.intervals
    assert predict(again, 1e9, 2e10) == predict(fit, 1e9, 2e10)
    assert compute_optimal(again, 1e21) == compute_optimal(fit, 1e21)


@pytest.mark.parametrize(
    "text,problem",
    [("{", "not a scaling-law fit"), ('{"kind": "something else", "version": 1}', "kind")],
)
def test_from_json_rejects_other_files(text, problem):
    with pytest.raises(PretrainError, match=problem):
        ScalingFit.from_json(text)


def test_same_seed_same_intervals_and_no_bootstrap_collapses_them():
    points = ladder(seed=3)
    first, second = (fit_scaling_law(*points, bootstrap=10, seed=7) for _ in range(2))
    assert first.intervals == second.intervals
    point_only = fit_scaling_law(*points, bootstrap=0)
    assert point_only.law == first.law
    assert all(e.low == e.value == e.high for e in point_only.intervals.values())


def _points(n_points: int = 6) -> tuple[list[float], list[float], list[float]]:
    params = [1e7, 1e7, 1e8, 1e8, 1e9, 1e9][:n_points]
    tokens = [2e8, 1e9, 2e9, 1e10, 2e10, 1e11][:n_points]
    return params, tokens, [float(CHINCHILLA.loss(n, d)) for n, d in zip(params, tokens)]


def _with(index: int, column: int, value: float):
    columns = [list(c) for c in _points()]
    columns[column][index] = value
    return columns


@pytest.mark.parametrize(
    "points,problem",
    [
        (_points(4), r"4 points; the law has 5 parameters, so at least 5"),
        (([1e7, 1e7, 1e7, 1e8, 1e8, 1e8], _points()[1], _points()[2]), r"2 distinct model sizes; at least 3"),
        ((_points()[0], [1e9] * 6, _points()[2]), r"1 distinct token count\(s\); at least 2"),
        (_with(2, 2, math.nan), r"losses\[2\] is nan"),
        (_with(1, 1, math.inf), r"tokens\[1\] is inf"),
        (_with(0, 0, 0.0), r"params\[0\] = 0 must be positive"),
        (_with(3, 1, -1e9), r"tokens\[3\] = -1e\+09 must be positive"),
        (
            (_points()[0], _points()[1], _points()[2][:5]),
            r"one value per run \(params=6, tokens=6, losses=5\)",
        ),
        ((_points()[0], _points()[1], ["x"] * 6), r"losses must be numbers"),
        (([[1e7, 1e8]] * 3, _points()[1][:3], _points()[2][:3]), r"params must be a flat list"),
    ],
)
def test_bad_points_raise_a_pretrain_error_naming_the_problem(points, problem):
    with pytest.raises(PretrainError, match=problem):
        fit_scaling_law(*points, bootstrap=0)


def test_the_minimum_ladder_fits():
    fitted = fit_scaling_law(*_points(), bootstrap=5)
    assert all(np.isfinite(getattr(fitted.law, name)) for name in PARAMETER_NAMES)


@pytest.mark.parametrize("params,tokens", [(0.0, 1e9), (1e8, -1.0), (math.nan, 1e9)])
def test_predict_rejects_non_positive_sizes(fit, params, tokens):
    with pytest.raises(PretrainError, match="must be a positive number"):
        predict(fit, params, tokens)


def test_compute_optimal_needs_both_exponents_positive(fit):
    flat = ScalingFit(
        law=ScalingLaw(E=2.0, A=10.0, B=400.0, alpha=0.0, beta=0.3),
        bootstrap=[],
        params=fit.params,
        tokens=fit.tokens,
        losses=fit.losses,
        objective=0.0,
    )
    with pytest.raises(PretrainError, match="no compute-optimal split"):
        compute_optimal(flat, 1e21)
    with pytest.raises(PretrainError, match="flops = 0 must be a positive number"):
        compute_optimal(fit, 0.0)


def test_backtest_forecasts_the_largest_rung_from_the_smaller_sizes():
    params, tokens, losses = ladder(seed=1)
    largest = params == params.max()
    # the largest size reaches 10 % worse than the law, as a size whose lr was off would: the
    # backtest must report that miss, from a fit that never saw the largest size
    losses = np.where(largest, losses * 1.10, losses)
    backtest = backtest_largest_size(params, tokens, losses, bootstrap=20, seed=0)
    assert backtest.params == params.max() and backtest.tokens == tokens[largest].max()
    assert backtest.actual == losses[largest][np.argmax(tokens[largest])]
    smaller = fit_scaling_law(params[~largest], tokens[~largest], losses[~largest], bootstrap=20, seed=0)
    assert backtest.predicted == predict(smaller, backtest.params, backtest.tokens)
    assert backtest.predicted.value == pytest.approx(
        CHINCHILLA.loss(backtest.params, backtest.tokens), rel=0.01
    )
    assert backtest.miss == pytest.approx(1 / 1.10 - 1, abs=0.01)


def test_backtest_needs_three_sizes_without_the_largest():
    params, tokens, losses = _points()  # 3 sizes: 2 are left, too few to fit
    assert backtest_largest_size(params, tokens, losses, bootstrap=0) is None


# The tiny recipe's first Muon ladder (4 layers x 64 no better than 2 x 64, and 50-100 steps only): final
# validation losses of 3 sizes x 3 budgets, as measured. Unbounded, the fit made the size term a step
# (alpha 7.6, A ~ 5e34) and E ~ 5e-5.
NARROW_LADDER = (
    [40160] * 3 + [106816] * 3 + [213568] * 3,
    [393216, 598016, 794624] * 3,
    [6.63411, 6.31734, 6.03456, 6.18541, 5.78492, 5.50278, 6.24508, 5.82829, 5.51859],
)


def test_a_ladder_that_cannot_pin_a_parameter_leaves_it_on_the_box_and_says_so(fit):
    narrow = fit_scaling_law(*NARROW_LADDER, bootstrap=20, seed=0)
    low, high = EXPONENT_RANGE
    for law in [narrow.law, *narrow.bootstrap]:
        assert low <= law.alpha <= high and low <= law.beta <= high and law.E >= FLOOR_MIN * (1 - 1e-9)
    assert set(narrow.at_bounds) == {"E", "alpha"}
    assert fit.at_bounds == []  # Chinchilla's ladder pins all five

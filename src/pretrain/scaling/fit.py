"""Fit a recipe's own scaling law L(N, D) = E + A/N^α + B/D^β to a model ladder's final losses.

The method is Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), approach 3:
with A = exp(a), B = exp(b), E = exp(e), predict log L as LSE(a − α·log N, b − β·log D, e) and
minimise the Huber loss (δ = 1e-3) between predicted and observed log L with L-BFGS-B, started
from a grid of initialisations, keeping the best optimum. Uncertainty comes from the bootstrap:
refit on resamples of the points and report 5–95 % percentile intervals for every parameter, for
predicted losses and for the compute-optimal split of a FLOP budget (C = 6·N·D).

N counts non-embedding parameters, D training tokens, L the final validation loss in nats/token.

Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt") found that Hoffmann's own fit
stopped early; here the objective is scaled (mean Huber / δ, which has the same minimiser) and the
optimiser's tolerances are tight, so L-BFGS-B runs to the optimum. Only the best few of the 5400
grid starts (scored in one vectorised pass) are refined; over 40 noisy ladders the result was never
worse than the generating parameters. Bootstrap refits start from the point estimate and use a
vectorised reweighted Gauss-Newton solver on the same objective (see `fit_solver._refit_batch`):
200 refits take well under a second instead of several seconds, and land where L-BFGS-B does (to ~1e-6).

Minimum input: 5 points (the law has 5 parameters), at least 3 distinct N (E, A and α all shape the
loss-vs-N curve) and at least 2 distinct D (β needs a change in D to show). That is what the fit
needs to run, not what it needs to be trusted: read the bootstrap intervals. A ladder worth fitting
spans ≥ 10× in N with several D per N, so that the N and D terms can be told apart.

This module owns the fitting: validating a ladder's points, the point estimate and the bootstrap
resampling. The law and fit types and their predictions live in `pretrain.scaling.law`, the
objective and solvers in `pretrain.scaling.solver`; both are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pretrain.core.errors import DataError, PretrainError
from pretrain.scaling.law import (
    INTERVAL_PERCENTILES,
    JSON_KIND,
    JSON_VERSION,
    PARAMETER_NAMES,
    ComputeOptimal,
    Estimate,
    ScalingFit,
    ScalingLaw,
    compute_optimal,
    predict,
    tokens_per_param,
)
from pretrain.scaling.solver import (
    HUBER_DELTA,
    _best_grid_starts,
    _minimise,
    _refit_batch,
    _single_threaded_blas,
)

__all__ = [
    "HUBER_DELTA",
    "Backtest",
    "INTERVAL_PERCENTILES",
    "JSON_KIND",
    "JSON_VERSION",
    "MIN_DISTINCT_PARAMS",
    "MIN_DISTINCT_TOKENS",
    "MIN_POINTS",
    "PARAMETER_NAMES",
    "ComputeOptimal",
    "Estimate",
    "ScalingFit",
    "ScalingLaw",
    "compute_optimal",
    "backtest_largest_size",
    "fit_scaling_law",
    "predict",
    "tokens_per_param",
]

MIN_POINTS, MIN_DISTINCT_PARAMS, MIN_DISTINCT_TOKENS = 5, 3, 2


def _validated_points(params, tokens, losses) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("params", params), ("tokens", tokens), ("losses", losses)):
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as error:
            raise DataError(f"scaling-law fit: {name} must be numbers ({error})") from error
        if array.ndim != 1:
            raise DataError(
                f"scaling-law fit: {name} must be a flat list of numbers, got shape {array.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise DataError(
                f"scaling-law fit: {name}[{bad[0]}] is {array[bad[0]]} (NaN or infinite; "
                "drop or re-run that rung: a diverged run has no final loss)"
            )
        bad = np.flatnonzero(array <= 0)
        if bad.size:
            raise DataError(f"scaling-law fit: {name}[{bad[0]}] = {array[bad[0]]:g} must be positive")
        arrays.append(array)
    if len({a.size for a in arrays}) != 1:
        sizes = ", ".join(f"{n}={a.size}" for n, a in zip(("params", "tokens", "losses"), arrays))
        raise DataError(f"scaling-law fit: params, tokens and losses must have one value per run ({sizes})")
    n_points = arrays[0].size
    distinct_params, distinct_tokens = np.unique(arrays[0]).size, np.unique(arrays[1]).size
    if n_points < MIN_POINTS:
        raise DataError(
            f"scaling-law fit: {n_points} points; the law has 5 parameters, so at least {MIN_POINTS} "
            "runs are needed (more sizes and token counts give tighter intervals)"
        )
    if distinct_params < MIN_DISTINCT_PARAMS:
        raise DataError(
            f"scaling-law fit: {distinct_params} distinct model sizes; at least {MIN_DISTINCT_PARAMS} "
            "are needed to separate E, A and alpha (spread sizes over >= 10x)"
        )
    if distinct_tokens < MIN_DISTINCT_TOKENS:
        raise DataError(
            f"scaling-law fit: {distinct_tokens} distinct token count(s); at least {MIN_DISTINCT_TOKENS} "
            "are needed to estimate beta (train some sizes on more than one token budget)"
        )
    return arrays[0], arrays[1], arrays[2]


def _enough_variety(params: np.ndarray, tokens: np.ndarray) -> bool:
    return np.unique(params).size >= MIN_DISTINCT_PARAMS and np.unique(tokens).size >= MIN_DISTINCT_TOKENS


def fit_scaling_law(
    params: Any,
    tokens: Any,
    losses: Any,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    starts: int = 8,
    huber_delta: float = HUBER_DELTA,
) -> ScalingFit:
    """Fit L(N, D) = E + A/N^α + B/D^β to runs (params[i], tokens[i]) that reached losses[i].

    `starts`: how many of the best grid initialisations L-BFGS-B refines for the point estimate.
    `bootstrap`: how many resamples to refit (0: no intervals); each refit starts from the point
    estimate, which is near its optimum. `seed` makes the resamples reproducible.
    Raises PretrainError (DataError) naming the problem for too few, NaN or non-positive points.
    """
    if bootstrap < 0 or starts < 1:
        raise PretrainError(
            f"scaling-law fit: bootstrap={bootstrap}, starts={starts}; need bootstrap >= 0 and starts >= 1"
        )
    n_array, d_array, l_array = _validated_points(params, tokens, losses)
    with _single_threaded_blas():
        theta, objective, refits = _fit(n_array, d_array, l_array, bootstrap, seed, starts, huber_delta)
    return ScalingFit(
        law=ScalingLaw.from_vector(theta),
        bootstrap=refits,
        params=n_array.tolist(),
        tokens=d_array.tolist(),
        losses=l_array.tolist(),
        objective=objective,
        huber_delta=huber_delta,
        seed=seed,
    )


def _fit(n_array, d_array, l_array, bootstrap, seed, starts, delta) -> tuple[np.ndarray, float, list]:
    """Point estimate (theta, objective) from the grid + L-BFGS-B, then the bootstrap refits."""
    log_n, log_d, log_l = np.log(n_array), np.log(d_array), np.log(l_array)
    theta, objective = _minimise(
        _best_grid_starts(log_n, log_d, log_l, delta, starts), log_n, log_d, log_l, delta
    )

    rng = np.random.default_rng(seed)
    resamples = []
    for _ in range(bootstrap):
        # A resample can lose whole sizes; one too thin to fit is redrawn, not fitted.
        for _attempt in range(100):
            index = rng.integers(0, n_array.size, n_array.size)
            if _enough_variety(n_array[index], d_array[index]):
                resamples.append(index)
                break
    if not resamples:
        return theta, objective, []
    index = np.array(resamples)
    refits = _refit_batch(
        np.repeat(theta[None, :], len(index), axis=0), log_n[index], log_d[index], log_l[index], delta
    )
    return theta, objective, [ScalingLaw.from_vector(row) for row in refits]


@dataclass(frozen=True)
class Backtest:
    """The ladder forecasting its own largest rung from the smaller sizes: an in-ladder error estimate.

    The target run is larger and longer than every rung, so the fit is always extrapolated; refitting
    without the largest size and predicting that size's longest run is the same extrapolation one rung
    down, measured against a loss the ladder actually reached.
    """

    params: float
    tokens: float
    actual: float
    predicted: Estimate

    @property
    def miss(self) -> float:
        """(predicted - actual) / actual."""
        return (self.predicted.value - self.actual) / self.actual


def backtest_largest_size(
    params: Any, tokens: Any, losses: Any, *, bootstrap: int = 200, seed: int = 0
) -> Backtest | None:
    """Fit without the largest size, forecast its longest run; None when the rest is too few to fit."""
    n_array, d_array, l_array = _validated_points(params, tokens, losses)
    largest = n_array == n_array.max()
    try:
        fit = fit_scaling_law(
            n_array[~largest], d_array[~largest], l_array[~largest], bootstrap=bootstrap, seed=seed
        )
    except DataError:
        return None
    longest = np.flatnonzero(largest)[np.argmax(d_array[largest])]
    n, d = float(n_array[longest]), float(d_array[longest])
    return Backtest(params=n, tokens=d, actual=float(l_array[longest]), predicted=predict(fit, n, d))

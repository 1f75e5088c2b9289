"""The numerical optimisation behind the scaling-law fit, in the optimiser's coordinates θ = (a, b, e, α, β).

log L is predicted as LSE(a − α·log N, b − β·log D, e); the objective is the mean Huber(δ)/δ of the
log-loss residuals. This module owns that objective, Hoffmann et al.'s initialisation grid (scored in
one vectorised pass), the L-BFGS-B point estimate (`_minimise`) and the vectorised reweighted
Gauss-Newton solver for bootstrap refits (`_refit_batch`). It knows nothing of laws or fits as
objects: `pretrain.scaling.fit` validates the points, resamples them and wraps the results.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

try:  # scipy's L-BFGS-B calls BLAS on 5-vectors; multithreaded OpenBLAS on a busy machine is ~100x slower
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, usually present
    threadpool_limits = None


HUBER_DELTA = 1e-3

# Hoffmann et al.'s initialisation grid, in the optimiser's coordinates (a, b, e, α, β): 5400 starts.
# Every start is scored at once (vectorised); L-BFGS-B then refines only the best few.
_GRID_A = np.arange(0.0, 25.1, 5.0)
_GRID_B = np.arange(0.0, 25.1, 5.0)
_GRID_E = np.arange(-1.0, 1.51, 0.5)
_GRID_ALPHA = np.arange(0.0, 2.01, 0.5)
_GRID_BETA = np.arange(0.0, 2.01, 0.5)
# The fit's box. Exponents: published language-model fits lie within ~0.05-0.7 (Chinchilla 0.34 / 0.28,
# Besiroglu et al. 0.35 / 0.37; Kaplan's non-embedding 0.076 / 0.095 in their form). Above 2 a term acts as a
# step rather than a power law, the fit using it to bend through a ladder too narrow to show curvature (the
# tiny ladder's first fits gave alpha = 2.57 and 7.6 with A ~ 1e34, and E ~ 0); at 0 a term vanishes and
# there is no compute-optimal split. The floor E stays above 0.1 nats/token (0.14 bits per token, far below
# any measured entropy of text per BPE token): E -> 0 only means the points cannot separate E from the power
# terms. A parameter that ends on its bound is reported as not determined by the ladder (`at_bounds`).
EXPONENT_RANGE = (0.02, 2.0)
FLOOR_MIN = 0.1
_BOUNDS = [(-20.0, 80.0), (-20.0, 80.0), (float(np.log(FLOOR_MIN)), 10.0), EXPONENT_RANGE, EXPONENT_RANGE]
# L-BFGS-B's ftol is relative to max(|f|, 1) and f is ~1e-3 here, so it acts as an absolute tolerance:
# anything looser stops on the flat E–A–α ridge with α off by ~2 %.
_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10}
_LOWER, _UPPER = np.array(_BOUNDS).T
# Bootstrap refits (see `_refit_batch`): stop a resample once an iteration improves its objective by
# less than this fraction; the parameters then agree with a tight L-BFGS-B run to ~1e-4.
_REFIT_RTOL, _REFIT_MAX_ITER, _REFIT_MAX_HALVINGS = 1e-12, 500, 40


def _lse_residuals(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray):
    """Residuals log L_pred − log L_obs and the softmax weights of the three terms (for the gradient).

    theta is (..., 5); the result broadcasts to (..., n_points). LSE is computed stably (max-shifted).
    """
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (a - alpha * log_n).shape)])
    top = terms.max(axis=0)
    exp_terms = np.exp(terms - top)
    total = exp_terms.sum(axis=0)
    return top + np.log(total) - log_l, exp_terms / total


def _huber(residuals: np.ndarray, delta: float) -> np.ndarray:
    absolute = np.abs(residuals)
    return np.where(absolute <= delta, 0.5 * residuals**2, delta * (absolute - 0.5 * delta))


def _objective(theta, log_n, log_d, log_l, delta) -> tuple[float, np.ndarray]:
    """Mean Huber(δ)/δ of the log-loss residuals at one theta, and its gradient.

    Written out term by term rather than through `_lse_residuals` because L-BFGS-B calls it thousands
    of times per fit on a few dozen points, where numpy's per-call overhead is the whole cost.
    """
    a, b, e, alpha, beta = theta
    params_term = a - alpha * log_n
    tokens_term = b - beta * log_d
    top = np.maximum(np.maximum(params_term, tokens_term), e)
    params_weight = np.exp(params_term - top)
    tokens_weight = np.exp(tokens_term - top)
    floor_weight = np.exp(e - top)
    total = params_weight + tokens_weight + floor_weight
    residuals = top + np.log(total) - log_l
    absolute = np.abs(residuals)
    # Divided by δ and averaged: the same minimiser as Hoffmann's summed Huber, but gradients of
    # O(1) instead of O(δ), so L-BFGS-B's tolerances mean something.
    value = np.where(absolute <= delta, 0.5 * residuals**2 / delta, absolute - 0.5 * delta).mean()
    slope = np.clip(residuals, -delta, delta) / (delta * residuals.size * total)
    params_slope, tokens_slope = slope * params_weight, slope * tokens_weight
    grad = np.array(
        [
            params_slope.sum(),
            tokens_slope.sum(),
            slope @ floor_weight,
            -(params_slope @ log_n),
            -(tokens_slope @ log_d),
        ]
    )
    return float(value), grad


_GRID = np.stack(
    np.meshgrid(_GRID_A, _GRID_B, _GRID_E, _GRID_ALPHA, _GRID_BETA, indexing="ij"), axis=-1
).reshape(-1, 5)
_GRID = np.unique(
    np.clip(_GRID, _LOWER, _UPPER), axis=0
)  # Hoffmann's grid has 0 exponents: start inside the box


def _best_grid_starts(log_n, log_d, log_l, delta, count: int) -> np.ndarray:
    residuals, _ = _lse_residuals(_GRID, log_n, log_d, log_l)
    scores = _huber(residuals, delta).mean(axis=-1)
    return _GRID[np.argsort(scores, kind="stable")[:count]]


def at_bounds(theta: np.ndarray, tolerance: float = 1e-6) -> list[int]:
    """Indices of theta's coordinates (a, b, e, alpha, beta) that sit on the fit's box."""
    return [i for i in range(len(theta)) if min(theta[i] - _LOWER[i], _UPPER[i] - theta[i]) <= tolerance]


def _single_threaded_blas():
    """Limit BLAS to one thread while fitting: the work is 5-vectors, where threads only contend."""
    return threadpool_limits(1, user_api="blas") if threadpool_limits else nullcontext()


def _minimise(starts: np.ndarray, log_n, log_d, log_l, delta) -> tuple[np.ndarray, float]:
    """L-BFGS-B from each start (rows of `starts`); the best optimum and its objective."""
    from scipy.optimize import minimize  # here, not at the top: every `pretrain` command imports this module

    best_theta, best_value = starts[0], float("inf")
    with _single_threaded_blas():
        for start in starts:
            result = minimize(
                _objective,
                start,
                args=(log_n, log_d, log_l, delta),
                jac=True,
                method="L-BFGS-B",
                bounds=_BOUNDS,
                options=_LBFGS_OPTIONS,
            )
            if np.all(np.isfinite(result.x)) and result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)
    return best_theta, best_value


def _residuals_and_jacobian(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta
):
    """Per resample (rows): log-loss residuals (B, n), their Jacobian in theta (B, n, 5), objective (B,)."""
    residuals, weights = _lse_residuals(theta, log_n, log_d, log_l)
    params_weight, tokens_weight, floor_weight = weights
    jacobian = np.stack(
        [params_weight, tokens_weight, floor_weight, -params_weight * log_n, -tokens_weight * log_d], axis=-1
    )
    return residuals, jacobian, _huber(residuals, delta).mean(axis=-1) / delta


def _refit_batch(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta
) -> np.ndarray:
    """Minimise the same Huber objective for every resample (row) at once, from `theta` (B, 5).

    L-BFGS-B, one resample at a time, needs ~150 evaluations of a nearly piecewise-linear objective
    per refit: 200 refits cost seconds. Iteratively reweighted Gauss-Newton, vectorised over the
    resamples, needs ~40 cheap iterations: each minimises the quadratic that majorises the Huber loss
    at the current residuals (weights min(1, δ/|r|)), with step halving until the objective does not
    rise, so it descends like L-BFGS-B and stops at the same optimum (checked in the tests). Rows
    drop out of the batch as they converge, so a slow one costs only itself.
    """
    theta = theta.copy()
    residuals, jacobian, objective = _residuals_and_jacobian(theta, log_n, log_d, log_l, delta)
    active = np.arange(len(theta))
    for _ in range(_REFIT_MAX_ITER):
        if active.size == 0:
            break
        data = (log_n[active], log_d[active], log_l[active])
        r, jac, f = residuals[active], jacobian[active], objective[active]
        root_weight = np.sqrt(np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300)))
        # pinv (SVD) rather than normal equations: the a and α columns are nearly collinear (log N varies little)
        step = -(np.linalg.pinv(root_weight[..., None] * jac) @ (root_weight * r)[..., None])[..., 0]
        scale = np.ones(active.size)
        done = np.zeros(active.size, dtype=bool)
        new_theta, new_r, new_jac, new_f = theta[active], r.copy(), jac.copy(), f.copy()
        for _halving in range(_REFIT_MAX_HALVINGS):
            trial = np.clip(theta[active] + scale[:, None] * step, _LOWER, _UPPER)
            trial_r, trial_jac, trial_f = _residuals_and_jacobian(trial, *data, delta)
            accept = ~done & (trial_f <= f)
            new_theta[accept], new_r[accept], new_jac[accept], new_f[accept] = (
                trial[accept],
                trial_r[accept],
                trial_jac[accept],
                trial_f[accept],
            )
            done |= accept
            if done.all():
                break
            scale[~done] *= 0.5
        theta[active], residuals[active], jacobian[active], objective[active] = (
            new_theta,
            new_r,
            new_jac,
            new_f,
        )
        improving = done & (f - new_f > _REFIT_RTOL * f)
        active = active[improving]
    return theta

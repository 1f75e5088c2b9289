"""The proposed mix: the one the fitted model predicts best, inside the search's bounds.

Candidates are drawn inside the bounds (Dirichlet around the prior at the proxies' concentration, and points
spread over the whole box of the bounds, which a flat Dirichlet would rarely hit with many sources); the predicted target is scored on all of them. A piecewise-constant model
(LightGBM on some component) is not trusted at a single point: the proposal is the mean of the `top_k` best
candidates, as RegMix does (a mean of points of the box ∩ simplex stays inside it). A smooth model (log-linear laws
only) is refined from the best candidates by SLSQP on the simplex within the bounds.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from pretrain.scaling.mixture.bounds import MixBounds
from pretrain.scaling.mixture.candidates import box_samples, dirichlet_in_bounds
from pretrain.scaling.mixture.regression import MixtureModel


def propose_mix(
    model: MixtureModel,
    bounds: MixBounds,
    concentration: float,
    n_candidates: int = 20_000,
    top_k: int = 50,
    starts: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(shares in `bounds.sources` order, predicted target) of the proposed mix."""
    rng = np.random.default_rng(seed)
    half = n_candidates // 2
    candidates = np.vstack(
        [
            bounds.prior[None],
            dirichlet_in_bounds(bounds, half, concentration, rng),
            box_samples(bounds, half, rng),
        ]
    )
    predicted = model.predict(candidates)
    order = np.argsort(predicted)
    if not model.smooth:
        w = candidates[order[:top_k]].mean(axis=0)
        return w, float(model.predict(w[None])[0])
    best_w, best_f = candidates[order[0]], float(predicted[order[0]])
    constraint = ({"type": "eq", "fun": lambda w: w.sum() - 1.0},)
    for i in order[:starts]:
        result = optimize.minimize(
            lambda w: float(model.predict(w[None])[0]),
            candidates[i],
            method="SLSQP",
            bounds=list(zip(bounds.low, bounds.high, strict=True)),
            constraints=constraint,
            options={"maxiter": 200, "ftol": 1e-10},
        )
        w = np.clip(result.x, bounds.low, bounds.high)
        w = w / w.sum()
        f = float(model.predict(w[None])[0])
        if f < best_f and bounds.contains(w, slack=1e-6)[0]:
            best_w, best_f = w, f
    return best_w, best_f

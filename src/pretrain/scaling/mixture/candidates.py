"""The proxies' mixes: Dirichlet draws around the prior, kept inside the search's bounds.

Dirichlet(concentration x prior) has mean prior; a larger concentration draws closer to it. Draws outside the
bounds are rejected; the prior itself is always the first candidate (the proxies then measure the recipe's own
mix, the baseline the proposal has to beat).
"""

from __future__ import annotations

import numpy as np

from pretrain.core.errors import MixtureError
from pretrain.scaling.mixture.bounds import MixBounds

MAX_DRAWS = 2_000_000


def dirichlet_in_bounds(
    bounds: MixBounds, n: int, concentration: float, rng: np.random.Generator, batch: int = 4096
) -> np.ndarray:
    """`n` Dirichlet(concentration x prior) draws inside `bounds` (n x sources)."""
    kept: list[np.ndarray] = []
    drawn = 0
    alpha = np.maximum(concentration * bounds.prior, 1e-3)
    while sum(len(k) for k in kept) < n:
        if drawn >= MAX_DRAWS:
            raise MixtureError(
                f"mixture: fewer than {n} of {drawn:,} Dirichlet draws around the prior fall inside the share "
                "bounds; raise mixture.concentration (draws closer to the prior) or widen mixture.band"
            )
        w = rng.dirichlet(alpha, batch)
        drawn += batch
        kept.append(w[bounds.contains(w)])
    return np.concatenate(kept)[:n]


def box_samples(bounds: MixBounds, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` mixes spread over the whole box of the bounds (on the simplex): uniform in [low, high] per source, then
    the total moved to 1 in proportion to each share's room (down to `low` or up to `high`), which keeps every
    share inside its bounds. Unlike flat Dirichlet draws these are never rejected, however tight the band."""
    w = bounds.low + rng.random((n, len(bounds.sources))) * (bounds.high - bounds.low)
    excess = w.sum(axis=1, keepdims=True) - 1.0
    room = np.where(excess > 0, w - bounds.low, bounds.high - w)
    return w - excess * room / np.maximum(room.sum(axis=1, keepdims=True), 1e-12)


def draw_candidates(bounds: MixBounds, n: int, concentration: float, seed: int) -> np.ndarray:
    """The `n` proxy mixes: the prior first, then `n - 1` Dirichlet draws inside the bounds."""
    rng = np.random.default_rng(seed)
    return np.vstack([bounds.prior[None], dirichlet_in_bounds(bounds, n - 1, concentration, rng)])

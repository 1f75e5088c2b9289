"""The shares a mixture search may give each source: a band around the recipe's weights, capped by repetition.

A short proxy barely pays for starving a source that the full model pays a lot for (the mixture research: a mix
with books at 0 looked free on 0.1M-parameter proxies and cost +0.44 bits/byte on books at the full size), so a
source's share is kept within [prior / band, prior x band] (and above `floor`); and a source may not be read more
than `max_repetition` times at the FULL run's tokens: share x full tokens <= max_repetition x its train tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pretrain.core.errors import MixtureError


@dataclass(frozen=True)
class MixBounds:
    """Per source (in `sources` order): the prior share and the lowest and highest share allowed."""

    sources: tuple[str, ...]
    prior: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def contains(self, weights: np.ndarray, slack: float = 1e-9) -> np.ndarray:
        """Which rows of `weights` (n x sources, rows summing to 1) lie inside the bounds."""
        weights = np.atleast_2d(weights)
        return np.all((weights >= self.low - slack) & (weights <= self.high + slack), axis=1)

    def as_dict(self, weights: np.ndarray) -> dict[str, float]:
        return {name: round(float(w), 6) for name, w in zip(self.sources, weights, strict=True)}

    def vector(self, weights: dict[str, float]) -> np.ndarray:
        """`{source: share}` as a vector in `sources` order (absent sources 0), normalised to sum 1."""
        w = np.array([float(weights.get(name, 0.0)) for name in self.sources])
        return w / w.sum()


def mix_bounds(
    prior: dict[str, float],
    train_tokens: dict[str, int],
    full_tokens: int,
    max_repetition: float,
    band: float,
    floor: float,
) -> MixBounds:
    """The bounds of a search around `prior` (weights, normalised here) for a full run of `full_tokens`.

    Raises `MixtureError` (before anything trains) for a source whose data is too small for any share the
    band allows, and for bounds no mix can meet."""
    sources = tuple(prior)
    p = np.array([float(prior[s]) for s in sources])
    if len(sources) < 2 or np.any(p <= 0):
        raise MixtureError(f"mixture: needs at least 2 sources with a weight > 0; got {dict(prior)}")
    p = p / p.sum()
    repetition_cap = np.array([max_repetition * train_tokens.get(s, 0) / full_tokens for s in sources])
    low = np.maximum(p / band, floor)
    high = np.minimum.reduce([np.full_like(p, 1.0), p * band, repetition_cap])
    for name, lo, hi, cap in zip(sources, low, high, repetition_cap, strict=True):
        if hi < lo:
            raise MixtureError(
                f"mixture: source {name!r} has {train_tokens.get(name, 0):,} train tokens; read at most "
                f"mixture.max_repetition={max_repetition:g} times in a full run of {full_tokens:,} tokens it can "
                f"take a share of {cap:.4f}, below the lowest share the band allows ({lo:.4f}); lower its weight, "
                "raise mixture.max_repetition or mixture.band, or give it more data"
            )
    if low.sum() > 1 + 1e-9 or high.sum() < 1 - 1e-9:
        raise MixtureError(
            f"mixture: no mix fits the bounds (lowest shares add up to {low.sum():.3f}, highest to "
            f"{high.sum():.3f}; both must allow 1); raise mixture.band or mixture.max_repetition, lower "
            "mixture.floor"
        )
    return MixBounds(sources, p, low, high)

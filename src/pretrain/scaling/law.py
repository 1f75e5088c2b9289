"""A fitted scaling law and what it predicts: the law L(N, D) = E + A/N^α + B/D^β, the fit record
(point estimate, bootstrap laws, points; JSON round trip) and its bootstrap-interval predictions:
the loss of a run, and the compute-optimal split of a FLOP budget (C = 6·N·D).

`pretrain.scaling.fit` produces a `ScalingFit`; this module owns the types and reading them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pretrain.core.errors import DataError, PretrainError
from pretrain.scaling.solver import HUBER_DELTA, at_bounds

INTERVAL_PERCENTILES = (5.0, 95.0)
PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta")
JSON_KIND, JSON_VERSION = "pretrain.scaling_fit", 1


@dataclass(frozen=True)
class ScalingLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta, in nats/token."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, params: Any, tokens: Any) -> Any:
        """Predicted loss; `params` and `tokens` may be floats or numpy arrays (broadcast)."""
        return self.E + self.A / np.power(params, self.alpha) + self.B / np.power(tokens, self.beta)

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """(N, D) minimising L subject to 6·N·D = flops; (nan, nan) when α or β is 0 (no optimum)."""
        if self.alpha <= 0 or self.beta <= 0 or self.A <= 0 or self.B <= 0:
            return float("nan"), float("nan")
        # Setting dL/dN = 0 with D = C/(6N): α·A/N^α = β·B/D^β, which solves in closed form.
        scale = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        params = scale * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return params, flops / 6.0 / params

    def as_vector(self) -> np.ndarray:
        """The optimiser's coordinates: (log A, log B, log E, α, β)."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    @classmethod
    def from_vector(cls, theta: np.ndarray) -> ScalingLaw:
        a, b, e, alpha, beta = (float(x) for x in theta)
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval [low, high]."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal split of `flops` under a fitted law, each with its bootstrap interval."""

    flops: float
    params: Estimate
    tokens: Estimate
    tokens_per_param: Estimate
    loss: Estimate


@dataclass
class ScalingFit:
    """A fitted law, the bootstrap refits behind its intervals, and the points it was fitted to.

    The bootstrap laws are kept (not just the intervals) so that intervals for any prediction or
    FLOP budget can be computed after a round trip through `to_json()` / `from_json()`.
    """

    law: ScalingLaw
    bootstrap: list[ScalingLaw]
    params: list[float]
    tokens: list[float]
    losses: list[float]
    objective: float  # mean Huber(δ)/δ of the log-loss residuals at the optimum
    huber_delta: float = HUBER_DELTA
    percentiles: tuple[float, float] = INTERVAL_PERCENTILES
    seed: int = 0
    intervals: dict[str, Estimate] = field(init=False)

    def __post_init__(self) -> None:
        self.intervals = {
            name: self._estimate(getattr(self.law, name), [getattr(law, name) for law in self.bootstrap])
            for name in PARAMETER_NAMES
        }

    def _estimate(self, value: float, samples: Any) -> Estimate:
        samples = np.asarray(samples, dtype=float)
        samples = samples[np.isfinite(samples)]
        if samples.size == 0:  # no bootstrap: the interval collapses onto the point estimate
            return Estimate(float(value), float(value), float(value))
        low, high = np.percentile(samples, self.percentiles)
        return Estimate(float(value), float(low), float(high))

    @property
    def at_bounds(self) -> list[str]:
        """Parameters of the point estimate that ended on the fit's box: the points do not determine them."""
        return [("A", "B", "E", "alpha", "beta")[i] for i in at_bounds(self.law.as_vector())]

    def to_json(self) -> str:
        payload = {
            "kind": JSON_KIND,
            "version": JSON_VERSION,
            "law": asdict(self.law),
            "intervals": {name: asdict(est) for name, est in self.intervals.items()},  # for readers only
            "objective": self.objective,
            "huber_delta": self.huber_delta,
            "percentiles": list(self.percentiles),
            "seed": self.seed,
            "points": {"params": self.params, "tokens": self.tokens, "losses": self.losses},
            "bootstrap": [asdict(law) for law in self.bootstrap],
        }
        return json.dumps(payload, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ScalingFit:
        try:
            payload = json.loads(text)
            if payload.get("kind") != JSON_KIND or payload.get("version") != JSON_VERSION:
                raise ValueError(f"expected kind {JSON_KIND!r} version {JSON_VERSION}")
            points = payload["points"]
            return cls(
                law=ScalingLaw(**payload["law"]),
                bootstrap=[ScalingLaw(**law) for law in payload["bootstrap"]],
                params=[float(x) for x in points["params"]],
                tokens=[float(x) for x in points["tokens"]],
                losses=[float(x) for x in points["losses"]],
                objective=float(payload["objective"]),
                huber_delta=float(payload["huber_delta"]),
                percentiles=tuple(float(p) for p in payload["percentiles"]),
                seed=int(payload["seed"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"not a scaling-law fit (re-run the fit to rewrite it): {error}") from error


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise PretrainError(f"scaling-law fit: {name} = {value:g} must be a positive number")
    return value


def predict(fit: ScalingFit, params: float, tokens: float) -> Estimate:
    """Predicted final loss of a run with `params` non-embedding parameters on `tokens` tokens."""
    params, tokens = _positive("params", params), _positive("tokens", tokens)
    samples = [law.loss(params, tokens) for law in fit.bootstrap]
    return fit._estimate(float(fit.law.loss(params, tokens)), samples)


def compute_optimal(fit: ScalingFit, flops: float) -> ComputeOptimal:
    """The N, D that minimise the fitted loss for a budget of `flops` = 6·N·D, with intervals."""
    flops = _positive("flops", flops)
    params, tokens = fit.law.compute_optimal(flops)
    if not np.isfinite(params):
        raise PretrainError(
            f"scaling-law fit: alpha = {fit.law.alpha:g}, beta = {fit.law.beta:g}; loss does not fall "
            "with both size and tokens, so there is no compute-optimal split (add sizes / token budgets)"
        )
    splits = np.array([law.compute_optimal(flops) for law in fit.bootstrap]).reshape(-1, 2)
    losses = [law.loss(n, d) for law, (n, d) in zip(fit.bootstrap, splits)]
    return ComputeOptimal(
        flops=flops,
        params=fit._estimate(params, splits[:, 0]),
        tokens=fit._estimate(tokens, splits[:, 1]),
        tokens_per_param=fit._estimate(tokens / params, splits[:, 1] / splits[:, 0]),
        loss=fit._estimate(float(fit.law.loss(params, tokens)), losses),
    )


def tokens_per_param(fit: ScalingFit, flops: float) -> Estimate:
    """D/N at the compute optimum for `flops` (20 under Chinchilla's rule; a recipe's own law may differ)."""
    return compute_optimal(fit, flops).tokens_per_param

"""Loss-spike guard: skip non-finite or spiking updates, ask for a rollback when spikes persist.

A spike is a loss more than `zscore` standard deviations above the mean of the last `window`
accepted losses (after `min_history` of them), or a gradient norm (before clipping) more than
`grad_norm_zscore` standard deviations above the mean of the last `window` accepted norms (once there
are `window` of them: early-training norms rise and fall too much to be judged against a few steps) and at
least `grad_norm_min_ratio` times that mean (in the lr cooldown the norms vary so little that a hard batch's
ordinary 2x norm scored z=11: the z-score alone skipped steps that were no spikes). OLMo-core skips such
updates; we also roll back to the last good checkpoint after `spikes_before_rollback` consecutive skips
and move the data past the offending window, at most `max_rollbacks` times.
"""

from __future__ import annotations

import math
from collections import deque

from pretrain.config.stability import StabilityConfig


class SpikeGuard:
    def __init__(self, cfg: StabilityConfig):
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=cfg.window)  # losses of accepted steps
        self.grad_norms: deque[float] = deque(maxlen=cfg.window)  # their gradient norms
        self.consecutive = 0
        self.rollbacks = 0
        self.skipped = 0

    def check(self, loss: float, grad_norm: float) -> str | None:
        """Return None to apply the update, or the reason to skip it."""
        if not self.cfg.enabled:
            return None
        reason = None
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            reason = "non_finite"
        elif len(self.history) >= self.cfg.min_history:
            z = _zscore(loss, self.history)
            # a full window of norms: early in training they drift too much to be judged against a few steps
            full = len(self.grad_norms) >= max(self.cfg.min_history, self.cfg.window)
            z_norm = _zscore(grad_norm, self.grad_norms) if full else 0.0
            if full and grad_norm < self.cfg.grad_norm_min_ratio * sum(self.grad_norms) / len(
                self.grad_norms
            ):
                z_norm = 0.0  # many deviations, but of a narrow spread: no blow-up
            if z > self.cfg.zscore:
                reason = f"spike(z={z:.1f})"
            elif self.cfg.grad_norm_zscore is not None and z_norm > self.cfg.grad_norm_zscore:
                reason = f"grad_norm_spike(z={z_norm:.1f})"
        if reason:
            self.consecutive += 1
            self.skipped += 1
        else:
            self.consecutive = 0
            self.history.append(loss)
            self.grad_norms.append(grad_norm)
        return reason

    @property
    def wants_rollback(self) -> bool:
        return self.cfg.enabled and self.consecutive >= self.cfg.spikes_before_rollback

    def state_dict(self) -> dict:
        return {
            "history": list(self.history),
            "grad_norms": list(self.grad_norms),
            "consecutive": self.consecutive,
            "rollbacks": self.rollbacks,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = deque(state.get("history", []), maxlen=self.cfg.window)
        self.grad_norms = deque(state.get("grad_norms", []), maxlen=self.cfg.window)
        self.consecutive = state.get("consecutive", 0)
        self.rollbacks = state.get("rollbacks", 0)
        self.skipped = state.get("skipped", 0)


def _zscore(value: float, history: deque[float]) -> float:
    """Standard deviations of `value` above the mean of `history`."""
    mean = sum(history) / len(history)
    std = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history)) or 1e-8
    return (value - mean) / std

"""Loss-spike guard: skip non-finite or spiking updates, ask for a rollback when spikes persist.

A spike is a loss more than `zscore` standard deviations above the mean of the last `window`
accepted losses (after `min_history` of them). OLMo-core skips such updates; we also roll back to
the last good checkpoint after `spikes_before_rollback` consecutive skips and move the data past the
offending window, at most `max_rollbacks` times.
"""

from __future__ import annotations

import math
from collections import deque

from pretrain.config.train import StabilityConfig


class SpikeGuard:
    def __init__(self, cfg: StabilityConfig):
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=cfg.window)
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
            mean = sum(self.history) / len(self.history)
            std = math.sqrt(sum((x - mean) ** 2 for x in self.history) / len(self.history)) or 1e-8
            if (loss - mean) / std > self.cfg.zscore:
                reason = f"spike(z={(loss - mean) / std:.1f})"
        if reason:
            self.consecutive += 1
            self.skipped += 1
        else:
            self.consecutive = 0
            self.history.append(loss)
        return reason

    @property
    def wants_rollback(self) -> bool:
        return self.cfg.enabled and self.consecutive >= self.cfg.spikes_before_rollback

    def state_dict(self) -> dict:
        return {
            "history": list(self.history),
            "consecutive": self.consecutive,
            "rollbacks": self.rollbacks,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = deque(state.get("history", []), maxlen=self.cfg.window)
        self.consecutive = state.get("consecutive", 0)
        self.rollbacks = state.get("rollbacks", 0)
        self.skipped = state.get("skipped", 0)

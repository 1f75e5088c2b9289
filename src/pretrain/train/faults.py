"""Test-only fault injection, driven by the recipe's `train.fault_injection` section.

    --set 'train.fault_injection.nan_at=[12]' --set 'train.fault_injection.spike_at=[20,21]'

makes the 12th attempted step's loss NaN and multiplies the losses of attempts 20-21 by `spike_scale`
*before* backward, so the spike guard sees real non-finite / exploding gradients; `grad_spike_at` scales
the gradients alone (the loss value is unchanged), as a gradient-norm spike the loss does not show yet. Attempts count like
steps but are not rewound by a rollback, so a fault is injected once, as a bad data window would be.
`die_at=7` ends the process at attempt 7 without cleanup (as a crashed node would), on rank `die_rank`
(default: every rank). `pause_at=[3]` makes attempt 3 sleep `pause_s` seconds first (a step slow enough to
signal it mid-way). Empty in normal runs: it costs one dict lookup per step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from pretrain.config.stability import FaultInjectionConfig

DIE_EXIT_CODE = 17

LossFault = Callable[[torch.Tensor], torch.Tensor]


class FaultInjector:
    """Which fault (if any) hits each attempted step on this rank."""

    def __init__(self, plan: dict[int, str], scale: float, pause_s: float = 0.0):
        self.plan, self.scale, self.pause_s = plan, scale, pause_s

    @classmethod
    def from_config(cls, cfg: FaultInjectionConfig, rank: int, restarts: int = 0) -> FaultInjector:
        plan = {step: "nan" for step in cfg.nan_at}
        plan.update({step: "spike" for step in cfg.spike_at})
        plan.update({step: "grad_spike" for step in cfg.grad_spike_at})
        plan.update({step: "pause" for step in cfg.pause_at})
        # a crashed node is replaced: the processes the launcher restarts do not die again
        if cfg.die_at is not None and cfg.die_rank in (None, rank) and restarts == 0:
            plan[cfg.die_at] = "die"
        return cls(plan, cfg.spike_scale, cfg.pause_s)

    def for_step(self, attempt: int) -> LossFault | None:
        """The loss transform for this attempt (None = no fault); a `die` fault exits here."""
        kind = self.plan.get(attempt)
        if kind == "die":
            os._exit(DIE_EXIT_CODE)  # no cleanup, no flush: what a crashed node leaves behind
        if kind == "pause":
            time.sleep(self.pause_s)
        if kind == "nan":
            return lambda loss: loss * float("nan")
        if kind == "spike":
            return lambda loss: loss * self.scale
        if kind == "grad_spike":  # same value, gradient times scale
            return lambda loss: loss + (self.scale - 1) * (loss - loss.detach())
        return None

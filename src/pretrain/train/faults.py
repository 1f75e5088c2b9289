"""Test-only fault injection, driven by the `PRETRAIN_FAULT_INJECT` environment variable.

`PRETRAIN_FAULT_INJECT="nan@12,spike@20,spike@21"` makes the 12th attempted step's loss NaN and
multiplies the losses of attempts 20-21 (attempts count like steps but are not rewound by a rollback,
so a fault is injected once, as a bad data window would be) by `PRETRAIN_FAULT_SPIKE_SCALE` (default 50) *before* backward, so the guard
sees real non-finite / exploding gradients. `die@7` ends the process at attempt 7 without cleanup (as a
crashed node would), on the rank named by `PRETRAIN_FAULT_RANK` (default: every rank). Unset in normal runs:
it costs one dict lookup per step.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch


class FaultInjector:
    def __init__(self, plan: dict[int, str], scale: float):
        self.plan, self.scale = plan, scale

    @classmethod
    def from_env(cls) -> FaultInjector:
        spec = os.environ.get("PRETRAIN_FAULT_INJECT", "")
        plan = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            kind, _, step = item.partition("@")
            plan[int(step)] = kind
        return cls(plan, float(os.environ.get("PRETRAIN_FAULT_SPIKE_SCALE", "50")))

    def for_step(self, step: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        kind = self.plan.get(step)
        if kind == "die" and os.environ.get(
            "PRETRAIN_FAULT_RANK", os.environ.get("RANK", "0")
        ) == os.environ.get("RANK", "0"):
            os._exit(17)
        if kind == "nan":
            return lambda loss: loss * float("nan")
        if kind == "spike":
            return lambda loss: loss * self.scale
        return None

"""Learning-rate schedules as a multiplier of the peak lr: linear warmup, then wsd | cosine | linear | constant.

WSD (warmup-stable-decay) holds the peak lr until the last `decay_fraction` of training and then
decays linearly to `min_lr_ratio`; any stable-phase checkpoint can therefore be cooled down later
as a branch, without re-running the warmup.
"""

from __future__ import annotations

import math

from pretrain.config.optimizer import ScheduleConfig


def warmup_steps(cfg: ScheduleConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return int(round(cfg.warmup_fraction * total_steps))


def lr_multiplier(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier for optimizer step `step` (0-based) of `total_steps`."""
    warm = warmup_steps(cfg, total_steps)
    if step < warm:
        return (step + 1) / warm
    floor = cfg.min_lr_ratio
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "wsd":
        decay = max(1, int(round(cfg.decay_fraction * total_steps)))
        start = total_steps - decay
        if step < start:
            return 1.0
        progress = (step - start + 1) / decay
        return 1.0 - (1.0 - floor) * min(progress, 1.0)
    progress = min(1.0, (step - warm + 1) / max(1, total_steps - warm))
    if cfg.name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - floor) * progress  # linear

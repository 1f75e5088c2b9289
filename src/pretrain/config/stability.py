"""Recipe keys `train.stability` and `train.fault_injection`: the loss-spike guard, and faults a test injects."""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import Section


class StabilityConfig(Section):
    enabled: bool = Field(
        True,
        description="skip updates with a non-finite or spiking loss, and roll back after repeated spikes",
    )
    window: int = Field(
        50,
        ge=5,
        description="accepted steps whose losses form the running mean and std a spike is measured against",
    )
    zscore: float = Field(
        6.0,
        gt=0,
        description="skip the update when the loss is more than this many standard deviations above the "
        "running mean; raise it if normal noise is being skipped",
    )
    grad_norm_zscore: float | None = Field(
        6.0,
        gt=0,
        description="also skip the update when the gradient norm (before clipping) is more than this many "
        "standard deviations above the mean of the last `window` accepted steps' norms (checked once there are "
        "`window` of them): it often blows up a step before the loss does; null watches the loss only",
    )
    grad_norm_min_ratio: float = Field(
        2.5,
        ge=1.0,
        description="a gradient-norm spike must also be this many times the window's mean norm: in the lr "
        "cooldown the norms vary so little that an ordinary hard batch (2x the mean) scored z=11 and was "
        "skipped; blow-ups are many times the mean",
    )
    min_history: int = Field(
        20,
        ge=2,
        description="accepted steps needed before spike detection starts (non-finite losses always count)",
    )
    spikes_before_rollback: int = Field(
        3, ge=1, description="consecutive skipped steps that trigger a rollback to the last good checkpoint"
    )
    max_rollbacks: int = Field(
        3,
        ge=0,
        description="rollbacks to the last good checkpoint allowed per run; then training stops with an error",
    )
    skip_window_steps: int = Field(
        0,
        ge=0,
        description="extra optimizer steps of data skipped after a rollback, beyond the spiky window the "
        "loader has already passed (0 = none)",
    )


class FaultInjectionConfig(Section):
    """Testing hook for the fault-tolerance tests and bench: break chosen steps on purpose; empty in real runs.

    Steps count optimizer-step attempts (a rollback does not rewind them), so each fault fires once.
    """

    nan_at: list[int] = Field(default_factory=list, description="attempts whose loss is made NaN")
    spike_at: list[int] = Field(
        default_factory=list, description="attempts whose loss is multiplied by spike_scale before backward"
    )
    grad_spike_at: list[int] = Field(
        default_factory=list,
        description="attempts whose gradients (not loss value) are multiplied by spike_scale: a gradient-norm "
        "spike the loss does not show",
    )
    spike_scale: float = Field(
        50.0, gt=0, description="loss multiplier of a spike_at / grad_spike_at attempt"
    )
    pause_at: list[int] = Field(
        default_factory=list,
        description="attempts that sleep pause_s seconds first (a slow step, to signal it)",
    )
    pause_s: float = Field(30.0, gt=0, description="how long a pause_at attempt sleeps")
    die_at: int | None = Field(
        None, gt=0, description="attempt at which the process exits at once (code 17), as a crashed node"
    )
    die_rank: int | None = Field(None, ge=0, description="the rank that dies at die_at (none = every rank)")

"""The callback hooks of the training loop, what a step hands them, and the step cadence helper."""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.train.state import TrainState


@dataclass
class StepOutput:
    """What one optimizer step measured (the update may have been skipped by the spike guard)."""

    loss: float  # mean over micro batches and ranks
    grad_norm: float
    data_wait_s: float
    skip_reason: str | None = None
    seconds: float = 0.0  # wall time of the step, set once it is done (after a CUDA sync)
    z_loss: float | None = None  # mean z-loss over micro batches and ranks, when train.z_loss > 0
    aux_loss: float | None = None  # a mixture of experts: the router's mean load-balancing loss
    router_loss: float | None = None  # ... and its weighted router losses, as in the objective
    expert_share: tuple[list[float], list[float]] | None = None  # per MoE layer: (min, max) expert share


class Callback:
    """No-op hooks; a callback overrides those it needs. Every rank calls every hook."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step of this process (state.step > 0 after a resume)."""

    def pre_optim_step(self, state: TrainState, out: StepOutput) -> str | None:
        """After backward and clipping, before the optimizer step (state.step not yet counting it): a reason
        to skip this update, or None to apply it (OLMo-core's hook of the same name)."""
        return None

    def on_update_skipped(self, state: TrainState, out: StepOutput) -> bool:
        """An update was skipped (`out.skip_reason`; state.step counts the step). True: the callback undid the
        step (a rollback), and no hook hears of it."""
        return False

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        """After a step (state.step already counts it) that was not rolled back."""

    def on_preempted(self, state: TrainState) -> None:
        """Every rank agreed to stop (state.stopping) and the stop checkpoint is written."""

    def on_train_end(self) -> None:
        """Always, also after an error: release what the callback holds."""


def fraction_steps(total: int, fraction: float | None, every: int | None) -> set[int]:
    """Steps at every `every` steps, or at each multiple of `fraction` of training (always incl. the end)."""
    if every:
        return set(range(every, total + 1, every)) | {total}
    if not fraction:
        return {total}
    n = max(1, round(1 / fraction))
    return {max(1, round(total * k / n)) for k in range(1, n + 1)}

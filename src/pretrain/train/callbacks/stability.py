"""Loss-spike handling on the loop: skip the update of a bad step, roll back when spikes persist.

The decision itself is `train.stability.SpikeGuard`'s; this callback acts on it. A rollback restores
the last good checkpoint's weights, optimizer and counters but keeps the loader where it is, so
training moves past the offending data window instead of replaying it.
"""

from __future__ import annotations

from pretrain.core.progress import get_logger
from pretrain.train import checkpoint as ckpt
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.checkpointer import Checkpointer
from pretrain.train.metrics import EVENT_ROLLBACK, EVENT_SKIP, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainingError, TrainState

log = get_logger("pretrain.train")


class SpikeGuardCallback(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog, checkpointer: Checkpointer):
        self.setup, self.metrics, self.checkpointer = setup, metrics, checkpointer
        self.cfg = setup.recipe.train.stability

    def pre_optim_step(self, state: TrainState, out: StepOutput) -> str | None:
        """The guard's verdict on this step's loss and gradient norm: None to apply the update, else why not."""
        reason = state.guard.check(out.loss, out.grad_norm)
        if reason:
            step = state.step + 1  # the step being taken
            self.metrics.log_event(step, EVENT_SKIP, reason=reason, loss=out.loss, grad_norm=out.grad_norm)
            log.warning(
                "step %d: update skipped (%s, loss %.4f, grad norm %.3g)",
                step,
                reason,
                out.loss,
                out.grad_norm,
            )
        return reason

    def on_update_skipped(self, state: TrainState, out: StepOutput) -> bool:
        """Spikes that persist (`spikes_before_rollback` in a row): back to the last good checkpoint."""
        if not state.guard.wants_rollback:
            return False
        self.rollback(state)
        return True

    def rollback(self, state: TrainState) -> None:
        """Back to the last good checkpoint; raises TrainingError when rollbacks are used up or none exists."""
        guard, cfg = state.guard, self.cfg
        if guard.rollbacks >= cfg.max_rollbacks:
            raise TrainingError(
                f"loss spiked for {guard.consecutive} consecutive steps at step {state.step} and "
                f"{guard.rollbacks} rollbacks were already used (train.stability.max_rollbacks); "
                "lower train.optimizer.lr, raise train.stability.zscore, or inspect the data around this step"
            )
        target = state.last_good or (ckpt.list_checkpoints(self.checkpointer.root) or [None])[-1]
        if target is None:
            raise TrainingError(
                f"loss spiked at step {state.step} before any checkpoint existed; lower the lr or warm up longer"
            )
        bad_step, tokens = state.step, state.tokens_seen
        guard.rollbacks += 1
        self.checkpointer.restore(target, state, with_data=False)  # the loader stays past the bad window
        self.setup.train_iter.skip(cfg.skip_window_steps * self.setup.accum)
        state.tokens_seen = (
            tokens  # tokens consumed still count; the schedule restarts from the checkpoint's step
        )
        guard.consecutive = 0
        self.metrics.log_event(
            state.step, EVENT_ROLLBACK, from_step=bad_step, to=str(target), rollbacks=guard.rollbacks
        )
        log.warning(
            "rolled back from step %d to %s (rollback %d of %d)",
            bad_step,
            target,
            guard.rollbacks,
            cfg.max_rollbacks,
        )

"""Periodic checkpoints on the loop (every `train.checkpoint.every_steps` / `every_fraction`, at a stop and
at the end), and their upload to the Hub when `hub.push_checkpoints` is on."""

from __future__ import annotations

from pretrain.core.layout import step_name
from pretrain.hub.pusher import CheckpointPusher
from pretrain.train.callbacks.base import Callback, StepOutput, fraction_steps
from pretrain.train.checkpointer import Checkpointer
from pretrain.train.metrics import EVENT_CHECKPOINT, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState


class Checkpointing(Callback):
    def __init__(
        self,
        setup: TrainSetup,
        metrics: MetricsLog,
        checkpointer: Checkpointer,
        pusher: CheckpointPusher | None,
    ):
        self.setup, self.metrics, self.checkpointer, self.pusher = setup, metrics, checkpointer, pusher
        cfg = setup.recipe.train.checkpoint
        self.steps = fraction_steps(setup.total_steps, cfg.every_fraction, cfg.every_steps)

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if state.step in self.steps or state.stopping or state.step == self.setup.total_steps:
            path = self.checkpointer.save(state)
            state.last_good = path
            if self.pusher is not None:  # the main process only has one; it uploads in the background
                self.pusher.submit(path, step_name(state.step))
            self.metrics.log_event(state.step, EVENT_CHECKPOINT, path=str(path))

    def on_train_end(self) -> None:
        if self.pusher is not None:
            self.pusher.close()

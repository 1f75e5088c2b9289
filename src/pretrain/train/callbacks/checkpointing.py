"""Periodic checkpoints on the loop (every `train.checkpoint.every_steps` / `every_fraction`, at a stop and
at the end), and their upload to the Hub when `hub.push_checkpoints` is on.

A save is written in the background (`Checkpointer`); it counts once it is complete on disk, which the
checkpointer reports at a later step's end, or when the next save, a rollback or the end of training waits for
it: only then does it become the last good checkpoint, get logged as an event and pushed."""

from __future__ import annotations

from pathlib import Path

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

    def on_train_start(self, state: TrainState) -> None:
        self.state = state
        self.checkpointer.on_complete = self._complete

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        self.checkpointer.poll()
        if state.step in self.steps or state.stopping or state.step == self.setup.total_steps:
            self.checkpointer.save(state)

    def _complete(self, step: int, path: Path) -> None:
        self.state.last_good = path
        if self.pusher is not None:  # the main process only has one; it uploads in the background
            self.pusher.submit(path, step_name(step))
        self.metrics.log_event(step, EVENT_CHECKPOINT, path=str(path))

    def on_train_end(self) -> None:
        try:
            self.checkpointer.close()  # the save in flight completes (and is pushed) before the pusher closes
        finally:
            if self.pusher is not None:
                self.pusher.close()

"""SIGTERM / SIGINT (a scheduler's preemption, Ctrl-C): checkpoint at the end of the step, then exit cleanly.

The handler only sets a flag; after each step the ranks agree (a signal on any rank stops every
rank), the `checkpointing` callback writes the stop checkpoint, and the run ends with a `preempted`
event, to be continued with `--resume auto`.
"""

from __future__ import annotations

import signal

import torch

from pretrain.core.progress import get_logger
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.metrics import EVENT_PREEMPTED, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        self.requested = False
        self.previous_handlers: dict = {}

    def on_train_start(self, state: TrainState) -> None:
        self.previous_handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}

    def _on_signal(self, signum, frame) -> None:
        log.warning("signal %d received: checkpointing at the end of this step, then exiting", signum)
        self.requested = True

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        state.stopping = self._agree(self.requested)

    def _agree(self, flag: bool) -> bool:
        """All ranks stop together: a signal on any rank stops every rank (a collective)."""
        acc = self.setup.accelerator
        if acc.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.setup.device)
        return bool(acc.reduce(t, reduction="sum").item() > 0)

    def on_preempted(self, state: TrainState) -> None:
        self.metrics.log_event(state.step, EVENT_PREEMPTED)
        log.warning("stopped at step %d after a signal; resume with --resume auto", state.step)

    def on_train_end(self) -> None:
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)
        self.previous_handlers = {}

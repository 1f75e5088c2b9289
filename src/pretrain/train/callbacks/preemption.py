"""SIGTERM / SIGINT (a scheduler's preemption, Ctrl-C): checkpoint at the end of the step, then stop.

The handler only sets a flag; after each step the ranks agree (a signal on any rank stops every
rank), the `checkpointing` callback writes the stop checkpoint, and the run ends with a `preempted`
event, to be continued with `--resume auto`. The command then exits 128 + the signal (130 for Ctrl-C):
a stopped run is not a finished one (`pretrain train ... && pretrain push ...` must not push it).

A second signal, once the first is more than `REPEAT_AFTER_S` old, aborts at once without the stop
checkpoint (the last complete checkpoint stays what `--resume auto` uses): the user who presses Ctrl-C again
does not want to wait for the step. Closer repeats are the same signal delivered twice — a terminal's Ctrl-C
reaches a launched rank directly and again through torchrun's agent, which forwards what it receives.

A Python handler runs only between bytecodes of the main thread, so a rank blocked in a collective whose
peer has died (an NCCL all-reduce; a gloo one with a stalled peer) never sees it: torchrun's agent stops the
survivors of a failed worker with SIGTERM and kills them only after its grace period (30 s), so every
restart would wait that long. Under torchrun's agent a `StopDeadline` thread therefore hears the signal at
the C level (`signal.set_wakeup_fd`) and, when the ranks have not agreed to stop within a few step times
(5-20 s, inside the agent's grace), exits the process at once (status 128 + signal) with a log line: the stop
checkpoint cannot be written without the dead peer anyway, and the job resumes from the last complete one.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import torch

from pretrain.core.launcher import under_elastic_agent
from pretrain.core.progress import get_logger
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.metrics import EVENT_PREEMPTED, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# the ranks get this many step times (at least MIN, at most MAX seconds) to agree on a stop after a signal
STOP_GRACE_STEPS, MIN_STOP_GRACE_S, MAX_STOP_GRACE_S = 3, 5.0, 20.0
REPEAT_AFTER_S = 1.0  # a second signal sooner than this after the first is the same one delivered twice


class StopDeadline:
    """Exits the process when a stop signal is not followed by the ranks' agreement within `grace()` seconds.

    Armed by the signal itself (at the C level, while the main thread may be blocked in a collective);
    `agreed()` disarms it. `exit` is `os._exit` (no clean-up that could block on the dead group).
    """

    def __init__(self, grace: Callable[[], float], exit: Callable[[int], None] = os._exit):
        self.grace, self.exit = grace, exit
        self._agreed = threading.Event()
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="pretrain-stop-deadline", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        signum = 0
        while signum not in STOP_SIGNALS:  # the fd also hears other signals that have a Python handler
            try:
                data = self._reader.recv(1)
            except OSError:
                return
            if not data or self._agreed.is_set():  # closed (training ended) or the stop was already agreed
                return
            signum = data[0]
        grace = self.grace()
        if self._agreed.wait(grace):
            return
        log.error(
            "signal %d: the ranks did not agree to stop within %.0f s (a collective is waiting on a process that "
            "died?); exiting without a stop checkpoint — the job resumes from the last complete one",
            signum, grace,
        )  # fmt: skip
        self.exit(128 + signum)

    def agreed(self) -> None:
        self._agreed.set()

    def close(self) -> None:
        """Disarm and restore the previous wakeup fd."""
        self._agreed.set()
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()
        self._reader.close()


class Preemption(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        self.requested = False
        self.signum = 0
        self.first_signal_at = 0.0
        self.previous_handlers: dict = {}
        self.deadline: StopDeadline | None = None
        self.step_seconds = 0.0

    def on_train_start(self, state: TrainState) -> None:
        self.previous_handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        if self.setup.accelerator.num_processes > 1 and under_elastic_agent():
            self.deadline = StopDeadline(self._grace)

    def _grace(self) -> float:
        return min(MAX_STOP_GRACE_S, max(MIN_STOP_GRACE_S, STOP_GRACE_STEPS * self.step_seconds))

    def _on_signal(self, signum, frame) -> None:
        now = time.monotonic()
        if self.requested:
            if now - self.first_signal_at < REPEAT_AFTER_S:
                return  # the first signal again (through the launcher)
            log.warning("signal %d again: stopping now, without a stop checkpoint", signum)
            raise KeyboardInterrupt
        log.warning(
            "signal %d received: checkpointing at the end of this step, then exiting (again to abort now)",
            signum,
        )
        self.requested, self.signum, self.first_signal_at = True, signum, now

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        self.step_seconds = max(self.step_seconds, out.seconds)
        state.stop_signal = self._agree(self.signum if self.requested else 0)
        state.stopping = state.stop_signal > 0
        if state.stopping and self.deadline is not None:
            self.deadline.agreed()  # every rank is here: the stop checkpoint can be written

    def _agree(self, signum: int) -> int:
        """All ranks stop together: a signal on any rank stops every rank (a collective); the largest signal
        number any rank received, 0 for none."""
        if self.setup.accelerator.num_processes == 1:
            return signum
        import torch.distributed as dist

        t = torch.tensor([signum], device=self.setup.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def on_preempted(self, state: TrainState) -> None:
        self.metrics.log_event(state.step, EVENT_PREEMPTED)
        log.warning("stopped at step %d after a signal; resume with --resume auto", state.step)

    def on_train_end(self) -> None:
        if self.deadline is not None:
            self.deadline.close()
            self.deadline = None
        for sig, handler in self.previous_handlers.items():
            signal.signal(sig, handler)
        self.previous_handlers = {}

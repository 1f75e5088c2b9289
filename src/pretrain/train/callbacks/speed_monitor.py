"""Throughput and the step record: tokens/s, MFU, step time, data wait, memory, ETA, and training progress.

Speeds are averaged over the window of steps since the last record (`train.log_every`); the ETA
uses the rate since this process started, evaluations included, so it is what the user will wait.
Every `log_every` steps a record goes to metrics.jsonl; the console gets a progress bar (terminal) or a line
every 30 s with the newest record's values (core/progress.py), and the last step's line.
"""

from __future__ import annotations

import platform
import time

import torch

from pretrain.core.progress import Progress, get_logger
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.metrics import MetricsLog, memory_gb, read_records, start_record
from pretrain.train.precision import precision_that_runs
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")


def device_label(device: torch.device) -> str:
    """The GPU's name, or the CPU's kind and thread count (the `device` of the start record)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class SpeedMonitor(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        self.progress: Progress | None = None
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_tokens, self.window_time, self.window_wait = 0, 0.0, 0.0
        self.window_losses: list[float] = []
        self.window_z: list[float] = []
        self.window_aux: list[tuple[float, float]] = []  # (aux loss, weighted router losses)

    def on_train_start(self, state: TrainState) -> None:
        s, acc = self.setup, self.setup.accelerator
        # a new run: step 0, or a branch of another run's checkpoint (`pretrain anneal`) with no log of its own
        first = state.step == 0 or not start_record(read_records(self.metrics.path))
        if first:
            self.metrics.log_start(
                state.step,
                device_label(s.device),
                acc.num_processes,
                s.n_params,
                precision_that_runs(s.recipe),
                s.parent,
            )
        if first and acc.is_main_process:
            shape = s.parallelism.shape  # the batch splits over the data-parallel ranks only
            log.info(
                "training %s params for %d steps (%d tokens/step, accum %d x %d ranks%s, %s, %s)",
                f"{s.n_params:,}",
                s.total_steps,
                s.tokens_per_step,
                s.accum,
                shape.dp,
                f", mesh {shape.describe()}" if shape.sharded else "",
                precision_that_runs(s.recipe),
                device_label(s.device),
            )
        self._reset_window()
        self.run_start = time.perf_counter()
        self.first_step = state.step
        self.progress = Progress(
            "train",
            total=s.total_steps,
            unit="steps",
            initial=state.step,
            disable=not acc.is_main_process,
        )

    def _router_fields(self, loss: float, out: StepOutput) -> dict:
        """A mixture of experts: the window's mean aux loss, the objective it trained (cross-entropy + z-loss +
        the router's weighted losses), and the last step's per-layer min / max expert share."""
        if not self.window_aux:
            return {}
        aux = sum(a for a, _ in self.window_aux) / len(self.window_aux)
        router = sum(r for _, r in self.window_aux) / len(self.window_aux)
        z = sum(self.window_z) / len(self.window_z) if self.window_z else 0.0
        objective = loss + self.setup.recipe.train.z_loss * z + router
        low, high = out.expert_share or (None, None)
        return {"aux_loss": aux, "objective": objective, "expert_share_min": low, "expert_share_max": high}

    def on_train_end(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        s, total = self.setup, self.setup.total_steps
        self.window_tokens += s.tokens_per_step
        self.window_time += out.seconds
        self.window_wait += out.data_wait_s
        self.window_losses.append(out.loss)
        if out.z_loss is not None:
            self.window_z.append(out.z_loss)
        if out.aux_loss is not None:
            self.window_aux.append((out.aux_loss, out.router_loss or 0.0))
        if state.step % s.recipe.train.log_every and state.step != total:
            self.progress.update_to(state.step)
            return
        steps_in_window = len(self.window_losses)
        tps = self.window_tokens / max(self.window_time, 1e-9)
        rate = (state.step - self.first_step) / max(time.perf_counter() - self.run_start, 1e-9)
        loss = sum(self.window_losses) / steps_in_window
        lr = s.optimizer.param_groups[0]["lr"]
        mfu = round(s.flops_per_token * tps / s.peak_flops, 4) if s.peak_flops else None
        eta_s = round((total - state.step) / max(rate, 1e-9), 1)
        self.metrics.log_step(
            step=state.step,
            tokens_seen=state.tokens_seen,
            loss=loss,
            lr=lr,
            grad_norm=out.grad_norm,
            tokens_per_s=round(tps, 1),
            mfu=mfu,
            step_time_s=round(self.window_time / steps_in_window, 4),
            data_wait_s=round(self.window_wait / steps_in_window, 5),
            mem_gb=memory_gb(s.device),
            eta_s=eta_s,
            skipped_updates=state.guard.skipped,
            z_loss=sum(self.window_z) / len(self.window_z) if self.window_z else None,
            **self._router_fields(loss, out),
        )
        fields = {
            "loss": f"{loss:.4f}",
            "lr": f"{lr:.2e}",
            "gnorm": f"{out.grad_norm:.2f}",
            "tok/s": f"{tps:,.0f}",
        }
        if mfu:
            fields["MFU"] = f"{mfu:.1%}"
        self.progress.update_to(state.step, final=state.step == total, fields=fields)
        self._reset_window()

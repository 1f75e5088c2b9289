"""`pretrain train RECIPE`: the training loop.

    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain train recipes/smollm2-135m/config.yaml
    pretrain train recipes/tiny/config.yaml --resume auto        # one process

Reads `tokens/` and `tokenizer/`, trains a random-init `AutoConfig` model, and writes
`checkpoints/step-NNNNNNN/`, `final/`, `metrics.jsonl`, `evals/`. Resume is exact: the optimizer,
schedule position, per-rank RNG and loader position come back from the checkpoint.
"""

from __future__ import annotations

import platform
import signal
import time
from pathlib import Path

import torch

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.markers import StageOutput
from pretrain.core.progress import format_seconds, get_logger
from pretrain.train import checkpoint as ckpt
from pretrain.train.faults import FaultInjector
from pretrain.train.metrics import MetricsLog, memory_gb, truncate_after
from pretrain.train.schedules import lr_multiplier
from pretrain.train.setup import TrainSetup, build_setup, fraction_steps
from pretrain.train.stability import SpikeGuard
from pretrain.train.step import clip_gradients, forward_backward

log = get_logger("pretrain.train")


class TrainingError(PretrainError):
    """Training cannot continue (e.g. rollbacks exhausted); the message says why and what to do."""


class Trainer:
    def __init__(self, recipe: Recipe, out: StageOutput, resume: str = "auto"):
        self.recipe, self.out, self.resume = recipe, out, resume
        self.s: TrainSetup = build_setup(recipe)
        self.guard = SpikeGuard(recipe.train.stability)
        self.step, self.tokens_seen = 0, 0
        self.stop_requested = False
        self.fault = FaultInjector.from_env()
        self.last_good: Path | None = None
        self.attempts = 0  # optimizer steps attempted by this process; unlike `step`, never rolled back

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> Path:
        s, acc = self.s, self.s.accelerator
        start_from = self._resume_point()
        if start_from is not None:
            self._restore(start_from, with_data=True)
        self.attempts = self.step
        if acc.is_main_process:
            truncate_after(s.metrics_path, self.step)
        metrics = MetricsLog(s.metrics_path, acc, enabled=acc.is_main_process)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._loop(metrics)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            metrics.close()
            if s.pusher is not None:
                s.pusher.close()
            if s.lock is not None:
                s.lock.release()
        return s.final_dir

    def _on_signal(self, signum, frame) -> None:
        log.warning("signal %d received: checkpointing at the end of this step, then exiting", signum)
        self.stop_requested = True

    def _resume_point(self) -> Path | None:
        if self.resume == "never":
            return None
        if self.resume != "auto":
            path = Path(self.resume)
            if not ckpt.is_complete(path):
                raise TrainingError(
                    f"{path}: not a complete checkpoint (no trainer_state/COMPLETE); pick another"
                )
            return path
        found = ckpt.list_checkpoints(self.s.ckpt_root)
        return found[-1] if found else None

    # ------------------------------------------------------------------ the loop
    def _loop(self, metrics: MetricsLog) -> None:
        s, acc, cfg = self.s, self.s.accelerator, self.recipe.train
        total = s.total_steps
        ckpt_steps = fraction_steps(total, cfg.checkpoint.every_fraction, cfg.checkpoint.every_steps)
        val_steps = fraction_steps(total, cfg.validation.every_fraction, None)
        eval_steps = fraction_steps(total, self.recipe.eval.every_fraction, None) if s.evaluator else set()
        if self.step == 0:
            metrics.write(
                {
                    "step": 0,
                    "event": "start",
                    "device": device_label(s.device),
                    "world_size": acc.num_processes,
                    "params": s.n_params,
                    "torch": torch.__version__,
                }
            )
        if self.step == 0 and acc.is_main_process:
            log.info(
                "training %s params for %d steps (%d tokens/step, accum %d x %d ranks)",
                f"{s.n_params:,}",
                total,
                s.tokens_per_step,
                s.accum,
                acc.num_processes,
            )
        window_tokens, window_time, window_wait, window_losses = 0, 0.0, 0.0, []
        run_start = time.perf_counter()
        first_step = self.step
        while self.step < total:
            t0 = time.perf_counter()
            for group, base in zip(s.optimizer.param_groups, s.base_lrs):
                group["lr"] = base * lr_multiplier(self.step, total, cfg.schedule)
            self.attempts += 1
            fault = self.fault.for_step(self.attempts)
            loss, wait = forward_backward(s.model, s.train_iter, s.accum, acc, fault)
            grad_norm = clip_gradients(s.model, acc, cfg.grad_clip)
            loss_value = float(loss)
            skip = self.guard.check(loss_value, grad_norm)
            if skip:
                s.optimizer.zero_grad(set_to_none=True)
                metrics.write({"step": self.step + 1, "event": "skip", "reason": skip, "loss": loss_value})
                log.warning("step %d: update skipped (%s, loss %.4f)", self.step + 1, skip, loss_value)
            else:
                s.optimizer.step()
                s.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens_seen += s.tokens_per_step
            if skip and self.guard.wants_rollback:
                self._rollback(metrics)
                continue
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            window_tokens += s.tokens_per_step
            window_time += dt
            window_wait += wait
            window_losses.append(loss_value)
            if self.step % cfg.log_every == 0 or self.step == total:
                tps = window_tokens / max(window_time, 1e-9)
                elapsed = time.perf_counter() - run_start
                rate = (self.step - first_step) / max(elapsed, 1e-9)
                record = {
                    "step": self.step,
                    "tokens_seen": self.tokens_seen,
                    "loss": sum(window_losses) / len(window_losses),
                    "lr": s.optimizer.param_groups[0]["lr"],
                    "grad_norm": grad_norm,
                    "tokens_per_s": round(tps, 1),
                    "mfu": round(s.flops_per_token * tps / s.peak_flops, 4) if s.peak_flops else None,
                    "step_time_s": round(window_time / len(window_losses), 4),
                    "data_wait_s": round(window_wait / len(window_losses), 5),
                    "mem_gb": memory_gb(s.device),
                    "eta_s": round((total - self.step) / max(rate, 1e-9), 1),
                    "skipped_updates": self.guard.skipped,
                }
                metrics.write(record)
                if acc.is_main_process:
                    log.info(
                        "step %d/%d loss %.4f lr %.2e gnorm %.2f %.0f tok/s%s ETA %s",
                        self.step,
                        total,
                        record["loss"],
                        record["lr"],
                        grad_norm,
                        tps,
                        f" MFU {record['mfu']:.1%}" if record["mfu"] else "",
                        format_seconds(record["eta_s"]),
                    )
                window_tokens, window_time, window_wait, window_losses = 0, 0.0, 0.0, []
            if self.step in val_steps:
                metrics.write({"step": self.step, "tokens_seen": self.tokens_seen, **self.s.validate()})
            if self.step in eval_steps:
                with preserved_rng():
                    results = s.evaluator(
                        acc.unwrap_model(s.model), step=self.step, tokens_seen=self.tokens_seen
                    )
                s.model.train()
                if results:
                    metrics.write({"step": self.step, "tokens_seen": self.tokens_seen, **results})
            stop = self._agree(self.stop_requested)
            if self.step in ckpt_steps or stop or self.step == total:
                self._save(metrics)
            if stop:
                metrics.write({"step": self.step, "event": "preempted"})
                log.warning("stopped at step %d after a signal; resume with --resume auto", self.step)
                return
        self.s.save_final(self.out, self.step, self.tokens_seen)

    def _agree(self, flag: bool) -> bool:
        """All ranks stop together: a signal on any rank stops every rank."""
        if self.s.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.s.device)
        return bool(self.s.accelerator.reduce(t, reduction="sum").item() > 0)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "guard": self.guard.state_dict(),
            "world_size": self.s.accelerator.num_processes,
            "total_steps": self.s.total_steps,
        }

    def _save(self, metrics: MetricsLog) -> None:
        try:
            path = self.s.save_checkpoint(self.step, self._state())
        except OSError as exc:
            self.s.discard_partial_checkpoints()
            previous = ckpt.list_checkpoints(self.s.ckpt_root)
            keep = (
                f"{previous[-1]} is intact and is what `--resume auto` will use"
                if previous
                else "no earlier checkpoint exists"
            )
            raise TrainingError(
                f"writing checkpoint step {self.step} under {self.s.ckpt_root} failed ({exc.strerror or exc}); {keep}. "
                "Free disk space / fix the filesystem, then resume with --resume auto"
            ) from None
        self.last_good = path
        metrics.write({"step": self.step, "event": "checkpoint", "path": str(path)})

    def _restore(self, folder: Path, with_data: bool) -> None:
        state = self.s.load_checkpoint(folder, with_data=with_data)
        if state.get("world_size") != self.s.accelerator.num_processes:
            raise TrainingError(
                f"{folder}: saved with {state.get('world_size')} processes, resuming with "
                f"{self.s.accelerator.num_processes}; resume with the same number of processes"
            )
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        rollbacks = self.guard.rollbacks
        self.guard.load_state_dict(state["guard"])
        self.guard.rollbacks = max(rollbacks, self.guard.rollbacks)
        self.last_good = folder
        log.info("resumed from %s (step %d, %s tokens)", folder, self.step, f"{self.tokens_seen:,}")

    def _rollback(self, metrics: MetricsLog) -> None:
        cfg = self.recipe.train.stability
        if self.guard.rollbacks >= cfg.max_rollbacks:
            raise TrainingError(
                f"loss spiked for {self.guard.consecutive} consecutive steps at step {self.step} and "
                f"{self.guard.rollbacks} rollbacks were already used (train.stability.max_rollbacks); "
                "lower train.optimizer.lr, raise train.stability.zscore, or inspect the data around this step"
            )
        target = self.last_good or (ckpt.list_checkpoints(self.s.ckpt_root) or [None])[-1]
        if target is None:
            raise TrainingError(
                f"loss spiked at step {self.step} before any checkpoint existed; lower the lr or warm up longer"
            )
        bad_step, tokens = self.step, self.tokens_seen
        self.guard.rollbacks += 1
        self._restore(target, with_data=False)  # keep the loader where it is: past the offending window
        self.s.train_iter.skip(self.recipe.train.stability.skip_window_steps * self.s.accum)
        self.tokens_seen = (
            tokens  # tokens consumed still count; the schedule restarts from the checkpoint's step
        )
        self.guard.consecutive = 0
        metrics.write(
            {
                "step": self.step,
                "event": "rollback",
                "from_step": bad_step,
                "to": str(target),
                "rollbacks": self.guard.rollbacks,
            }
        )
        log.warning(
            "rolled back from step %d to %s (rollback %d of %d)",
            bad_step,
            target,
            self.guard.rollbacks,
            cfg.max_rollbacks,
        )


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class preserved_rng:
    """Evaluation must not consume the training RNG streams (so it cannot change the trajectory)."""

    def __enter__(self):
        self.state = ckpt.rng_state()

    def __exit__(self, *exc):
        ckpt.set_rng_state(self.state)
        return False


def fingerprint_inputs(recipe: Recipe) -> dict:
    """Training reads the model, train and eval sections and the seed."""
    return recipe.section_values("model", "train", "eval", "seed")


def run_training(recipe: Recipe, out: StageOutput, resume: str = "auto") -> Path:
    """Stage function: train (resuming per `resume`) and publish `final/` through `out`."""
    if resume not in ("auto", "never") and not Path(resume).exists():
        raise TrainingError(f"--resume {resume}: no such checkpoint folder")
    return Trainer(recipe, out, resume).run()

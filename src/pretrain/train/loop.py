"""`pretrain train RECIPE`: the training loop.

    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain train recipes/smollm2-135m/config.yaml
    pretrain train recipes/tiny/config.yaml --resume auto        # one process

Reads `tokens/` and `tokenizer/`, trains a random-init `AutoConfig` model, and writes
`checkpoints/step-NNNNNNN/`, `final/`, `metrics.jsonl`, `evals/`. Resume is exact: the optimizer,
schedule position, per-rank RNG and loader position come back from the checkpoint.

The `Trainer` does the steps (`train_step`) and the loop; everything else hangs on the loop as a
callback (`callbacks/`): the speed monitor and step record, validation, in-loop evaluation,
preemption, checkpointing, and the spike guard, which also decides whether an update is applied.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pretrain.config import Recipe
from pretrain.core.errors import Interrupted
from pretrain.core.launcher import launcher_restarts
from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.train import checkpoint as ckpt_format
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.callbacks.checkpointing import Checkpointing
from pretrain.train.callbacks.data_stages import DataStageReport
from pretrain.train.callbacks.evaluation import InLoopEvaluation
from pretrain.train.callbacks.forecast import ForecastCheck
from pretrain.train.callbacks.preemption import Preemption
from pretrain.train.callbacks.speed_monitor import SpeedMonitor
from pretrain.train.callbacks.stability import SpikeGuardCallback
from pretrain.train.callbacks.validation import Validation
from pretrain.train.checkpointer import Checkpointer
from pretrain.train.compat import resume_problems
from pretrain.train.faults import FaultInjector
from pretrain.train.metrics import EVENT_RESTART, MetricsLog, truncate_after
from pretrain.train.moe import RouterStats
from pretrain.train.schedules import lr_multiplier
from pretrain.train.setup import TrainSetup, build_setup, prepare_process
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainingError, TrainState
from pretrain.train.step import clip_gradients, forward_backward

log = get_logger("pretrain.train")


class Trainer:
    def __init__(
        self, recipe: Recipe, out: StageOutput, resume: str = "auto", branch_from: str | None = None
    ):
        self.recipe, self.out, self.resume = recipe, out, resume
        self.branch_from = Path(branch_from) if branch_from else None
        self.setup: TrainSetup = build_setup(recipe)
        self.state = TrainState(guard=SpikeGuard(recipe.train.stability))
        # the hooks: none until `run()` builds them, so a bare `train_step()` applies every update
        self.callbacks: list[Callback] = []
        self.checkpointer = Checkpointer(self.setup)
        self.faults = FaultInjector.from_config(
            recipe.train.fault_injection, self.setup.accelerator.process_index, launcher_restarts()
        )

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> Path:
        """Resume (per `resume`), train to the end or to a stop signal, publish `final/`; returns its path.

        The run lock is released however this ends, a failed restore included."""
        s = self.setup
        try:
            start_from = self._restore()
            metrics = MetricsLog(
                s.recipe.layout.metrics, s.accelerator, enabled=s.accelerator.is_main_process
            )
            self._log_restart(metrics, start_from)
            self.callbacks = self._callbacks(metrics)
            try:
                for callback in self.callbacks:
                    callback.on_train_start(self.state)
                self._loop()
            finally:
                for callback in self.callbacks:
                    callback.on_train_end()
                metrics.close()
        finally:
            if s.lock is not None:
                s.lock.release()
        return s.recipe.layout.final

    def _restore(self) -> Path | None:
        """Load the checkpoint `resume` names (if any) and cut the metrics log back to its step."""
        s, state = self.setup, self.state
        start_from = self.checkpointer.resume_point(self.resume)
        if start_from is None and self.branch_from is not None:
            start_from = self._branch(self.branch_from)
        elif start_from is not None:
            problems = resume_problems(start_from, self.recipe, s.total_steps)
            if problems:  # a changed shape or an undone decay: refused before anything is loaded
                raise TrainingError("; ".join(problems))
            self.checkpointer.restore(start_from, state, with_data=True)
            if state.step > s.total_steps:  # e.g. `--set train.tokens=<fewer>` on a run that went further
                raise TrainingError(
                    f"{start_from}: this checkpoint is at step {state.step}, past this recipe's end at step "
                    f"{s.total_steps}; raise train.tokens / train.steps to train on, or start afresh with "
                    "--resume never in another output_dir"
                )
        state.attempts = state.step
        if s.accelerator.is_main_process:
            truncate_after(s.recipe.layout.metrics, state.step)
        return start_from

    def _branch(self, folder: Path) -> Path:
        """A branch of another run (`pretrain anneal`): its weights, optimizer, counters and RNG streams, but
        this recipe's data from the branch step on (the other run's data position means nothing to this mix)."""
        s = self.setup
        if not folder.exists():  # pruned, or mistyped: say which ones exist
            raise TrainingError(ckpt_format.not_a_checkpoint(folder))
        problems = ckpt_format.damage(folder)
        if problems:
            raise TrainingError(
                f"{folder}: not an intact checkpoint ({'; '.join(problems[:3])}); pick another"
            )
        self.checkpointer.restore(folder, self.state, with_data=False, with_rng=True)
        if s.train_iter.stage is None:
            raise TrainingError(
                f"{folder}: a branch reads its own data stages from the branch step on; give the recipe "
                "train.data_stages"
            )
        s.train_iter.start_at_step(self.state.step)
        log.info(
            "branched from %s at step %d: data from stage %s", folder, self.state.step, s.train_iter.stage
        )
        return folder

    def _log_restart(self, metrics: MetricsLog, start_from: Path | None) -> None:
        """A `restart` event and warning when the launcher restarted the job after a process died."""
        restarts = launcher_restarts()
        if restarts:
            metrics.log_event(self.state.step, EVENT_RESTART, restarts=restarts, resumed_from=str(start_from))
            log.warning(
                "restart %d of at most %d by the launcher after a process died: resumed from %s",
                restarts,
                self.recipe.train.max_restarts,
                start_from or "the start (no checkpoint yet)",
            )

    def _callbacks(self, metrics: MetricsLog) -> list[Callback]:
        """In the order they run after each step (see `callbacks/__init__.py`)."""
        s = self.setup
        evaluation = [InLoopEvaluation(s, metrics, s.evaluator)] if s.evaluator else []
        validation = Validation(s, metrics)
        return [
            SpeedMonitor(s, metrics),
            DataStageReport(s, metrics),
            validation,
            ForecastCheck(s, metrics, validation),
            *evaluation,
            Preemption(s, metrics),
            Checkpointing(s, metrics, self.checkpointer, s.pusher),
            SpikeGuardCallback(s, metrics, self.checkpointer),
        ]

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        s, state = self.setup, self.state
        while state.step < s.total_steps:
            t0 = time.perf_counter()
            out = self.train_step()
            if out.skip_reason and any(cb.on_update_skipped(state, out) for cb in self.callbacks):
                continue  # rolled back: the step never happened
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            out.seconds = time.perf_counter() - t0
            for callback in self.callbacks:
                callback.on_step_end(state, out)
            if state.stopping:
                for callback in self.callbacks:
                    callback.on_preempted(state)
                raise Interrupted(
                    state.stop_signal,
                    f"training stopped at step {state.step} by signal {state.stop_signal}, after its checkpoint; "
                    "run the same command again to resume",
                )
        self.checkpointer.save_final(self.out, state)

    def train_step(self) -> StepOutput:
        """One optimizer step: schedule, forward/backward over the micro batches, clip, update (unless skipped)."""
        s, state, cfg = self.setup, self.state, self.recipe.train
        for group, base in zip(s.optimizer.param_groups, s.base_lrs):
            group["lr"] = base * lr_multiplier(state.step, s.total_steps, cfg.schedule)
        state.attempts += 1
        if s.context is not None:  # a context-extension stage: its RoPE on the model, its FLOPs for MFU
            s.flops_per_token = s.context.enter(s.train_iter.stage)
        fault = self.faults.for_step(state.attempts)
        router = RouterStats(s.moe) if s.moe is not None else None
        loss, data_wait, z_loss = forward_backward(
            s.model,
            s.train_iter,
            s.train_iter.accum_steps,
            s.accelerator,
            fault,
            z_loss=cfg.z_loss,
            fused_head=s.fused_head,
            parallelism=s.parallelism,
            router=router,
        )
        out = StepOutput(
            loss=float(loss),
            grad_norm=clip_gradients(s.model, cfg.grad_clip),
            data_wait_s=data_wait,
            z_loss=float(z_loss) if z_loss is not None else None,
            aux_loss=router.aux_loss if router is not None else None,
            router_loss=router.weighted if router is not None else None,
            expert_share=router.shares() if router is not None else None,
        )
        out.skip_reason = next(filter(None, (cb.pre_optim_step(state, out) for cb in self.callbacks)), None)
        if not out.skip_reason:
            s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += s.tokens_per_step
        return out


def fingerprint_inputs(recipe: Recipe) -> dict:
    """Training reads the model, train and eval sections and the seed."""
    return recipe.section_values("model", "train", "eval", "seed")


def run_training(
    recipe: Recipe, out: StageOutput, resume: str = "auto", branch_from: str | None = None
) -> Path:
    """Stage function: train (resuming per `resume`) and publish `final/` through `out`.

    `branch_from` (used by `pretrain anneal`): a checkpoint of another run to start from when `resume`
    finds no checkpoint of this run: its weights, optimizer and step, with this recipe's data stages."""
    if resume not in ("auto", "never") and not Path(resume).exists():
        raise TrainingError(f"--resume {ckpt_format.not_a_checkpoint(Path(resume))}")
    prepare_process()
    return Trainer(recipe, out, resume, branch_from).run()

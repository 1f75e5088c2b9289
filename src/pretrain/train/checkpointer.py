"""Checkpoints of a running training, across ranks: save, restore, resume point, and the final model.

`checkpoint.py` owns the on-disk format; this module owns the choreography: which rank writes what,
and the barriers between the steps, so every rank sees a checkpoint either complete or not at all.

A save (`train.checkpoint.async_save`, the default) writes the small files at once (each rank's RNG and loader
position, the main process's counters, config and tokenizer), stages a CPU copy of each rank's weight and
optimizer shards, and leaves the rest to the background writer: each rank writes its shards, rank 0
consolidates `model.safetensors`, then seals the folder (its COMPLETE marker lists every file) and renames it
into place. Training steps on meanwhile. At most one save is in flight: the next save, a rollback, the end of
training and `final/` wait for it first; a finished one is noticed at each step's end (`poll`), and only then
does the checkpoint count (pruning, `last_good`, the Hub push, the metrics event).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.train import checkpoint as ckpt
from pretrain.train.parallel import state_io
from pretrain.train.parallel.async_save import CheckpointWriter
from pretrain.train.rng import set_rng_state
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainingError, TrainState

log = get_logger("pretrain.train")


class Checkpointer:
    def __init__(self, setup: TrainSetup):
        self.setup = setup
        self.root = setup.recipe.layout.checkpoints
        timeout = timedelta(seconds=setup.recipe.train.collective_timeout_s)
        self.writer: CheckpointWriter[tuple[int, Path]] = CheckpointWriter(
            setup.accelerator.num_processes > 1, timeout
        )
        # called with (step, folder) on every rank once a checkpoint is complete on disk
        self.on_complete: Callable[[int, Path], None] | None = None

    def resume_point(self, resume: str) -> Path | None:
        """The checkpoint `--resume` names: `never` = none, `auto` = the newest intact one, else a path.

        The main process checks the files against the checkpoint's COMPLETE marker (sizes and SHA-256) and every
        rank takes its answer. `auto` passes over a damaged checkpoint with one warning naming what is wrong; a
        named one that is damaged, or only damaged ones, are a `TrainingError`."""
        if resume == "never":
            return None
        acc = self.setup.accelerator
        choice = self._choose(resume) if acc.is_main_process else None
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            choice = broadcast_object_list([choice])[0]
        path, error = choice
        if error:
            raise TrainingError(error)
        return Path(path) if path else None

    def _choose(self, resume: str) -> tuple[str | None, str | None]:
        """(the checkpoint to resume from or None, the error to raise or None)."""
        if resume != "auto":
            if not Path(resume).exists():  # pruned, or mistyped: say which ones exist
                return None, ckpt.not_a_checkpoint(Path(resume))
            problems = ckpt.damage(Path(resume))
            if problems:
                return None, f"{resume}: not an intact checkpoint ({'; '.join(problems[:3])}); pick another"
            return resume, None
        damaged = []
        for folder in reversed(ckpt.list_checkpoints(self.root)):
            problems = ckpt.damage(folder)
            if not problems:
                if damaged:
                    log.warning(
                        "%s: %s — resuming from %s, the newest intact checkpoint",
                        "; ".join(damaged),
                        "damaged, not used" if len(damaged) == 1 else "damaged, none used",
                        folder.name,
                    )
                return str(folder), None
            damaged.append(f"{folder.name} ({'; '.join(problems[:3])})")
        if damaged:
            return None, (
                f"{self.root}: no intact checkpoint to resume from: {'; '.join(damaged)}; restore the files, "
                "or move the damaged checkpoints away to start afresh (--resume never starts afresh too)"
            )
        return None, None

    def save(self, state: TrainState) -> Path:
        """Start writing `checkpoints/step-N/` from every rank (a collective) and return its path; the folder
        appears when the write is complete (at once with `train.checkpoint.async_save: false`). An OSError
        leaves no partial folder."""
        self.finish()
        try:
            final = self._start(state)
            if not self.setup.recipe.train.checkpoint.async_save:
                self.finish()
            return final
        except OSError as exc:
            self._failed(state.step, exc)

    def _start(self, state: TrainState) -> Path:
        s, acc = self.setup, self.setup.accelerator
        attempt = f"{int(time.time())}"
        attempt = acc.gather_for_metrics([attempt])[0] if acc.num_processes > 1 else attempt
        tmp = ckpt.tmp_dir_for(self.root, state.step, attempt)
        final = s.recipe.layout.checkpoint(state.step)
        main = acc.is_main_process
        if main:
            tmp.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        ckpt.write_rank_state(tmp, acc.process_index, s.train_iter.state_dict())
        if main:
            ckpt.save_model_files(tmp, s.model, s.tokenizer)
            saved = state.state_dict(acc.num_processes, s.total_steps)
            saved["mesh"] = s.parallelism.shape.sizes()
            ckpt.write_main_state(tmp, saved, ckpt.resolved_recipe_yaml(s.recipe))
        in_background = s.recipe.train.checkpoint.async_save
        copy = state_io.stage if in_background else (lambda x: x)  # training changes the live tensors
        weights = copy(state_io.model_state(s.model))
        optimizer = None
        if s.recipe.train.checkpoint.save_optimizer:
            optimizer = copy(state_io.optimizer_state(s.model, s.optimizer))
        group = self.writer.group

        def write() -> None:
            state_io.write_weights(tmp, weights, ckpt.WEIGHTS, group, main)
            if optimizer is not None:
                state_io.write_optimizer(ckpt.optimizer_path(tmp), optimizer, group)
            if main:  # every rank's files are written: DCP's last collective waited for all of them
                ckpt.finalize(tmp, final)

        self.writer.submit(write, (state.step, final))
        return final

    def poll(self) -> None:
        """Collect the write in flight if it has finished (cheap; every step's end)."""
        self._collect(self.writer.poll)

    def finish(self) -> None:
        """Wait for the write in flight, if any: before another save, a restore, `final/`, and the end."""
        self._collect(self.writer.wait)

    def _collect(self, how: Callable[[], tuple[int, Path] | None]) -> None:
        from torch.distributed.checkpoint.api import CheckpointException

        pending = self.writer.in_flight
        try:
            done = how()
        except (OSError, CheckpointException) as exc:
            self._failed(pending[0] if pending else -1, exc)
        if done is None:
            return
        step, folder = done
        if self.setup.accelerator.is_main_process:
            ckpt.prune(self.root, self.setup.recipe.train.checkpoint.keep_last)
        if self.on_complete is not None:
            self.on_complete(step, folder)

    def _failed(self, step: int, exc: BaseException) -> None:
        if self.setup.accelerator.is_main_process:
            ckpt.discard_partial(self.root)
        previous = ckpt.list_checkpoints(self.root)
        keep = (
            f"{previous[-1]} is intact and is what `--resume auto` will use"
            if previous
            else "no earlier checkpoint exists"
        )
        reason = getattr(exc, "strerror", None) or str(exc)[:300]
        raise TrainingError(
            f"writing checkpoint step {step} under {self.root} failed ({reason}); "
            f"{keep}. Free disk space / fix the filesystem, then resume with --resume auto"
        ) from None

    def close(self) -> None:
        """Finish the write in flight and stop the writer's thread (the end of training, however it ends)."""
        try:
            self.finish()
        finally:
            self.writer.close()

    def restore(self, folder: Path, state: TrainState, with_data: bool, with_rng: bool | None = None) -> None:
        """Weights, optimizer and counters from `folder`; with_data: also this rank's loader position; with_rng
        (default: with_data): this rank's RNG streams (a branch takes them without the other run's data)."""
        s, acc = self.setup, self.setup.accelerator
        with_rng = with_data if with_rng is None else with_rng
        self.finish()
        acc.wait_for_everyone()  # a checkpoint just completed on rank 0 is on disk for every rank
        saved = ckpt.load_main_state(folder, s.model, s.optimizer, s.sharded)
        if with_data or with_rng:
            rank_state = ckpt.load_rank_state(folder, acc.process_index, acc.num_processes)
        if with_rng:
            set_rng_state(rank_state["rng"])
        if with_data:
            s.train_iter.load_state_dict(rank_state["loader"])
            saved_world = saved.get("world_size", acc.num_processes)
            saved_mesh = saved.get("mesh") or {"dp_replicate": saved_world, "dp_shard": 1, "tp": 1, "cp": 1}
            saved_dp = saved_mesh.get("dp_replicate", 1) * saved_mesh.get("dp_shard", 1)
            if saved_world != acc.num_processes or saved_mesh != s.parallelism.shape.sizes():
                saved_micro = rank_state["loader"]["batch_size"]
                log.info(
                    "%s was written by %d processes (micro batch %d, grad accumulation %d); resuming on %d "
                    "(micro batch %d, grad accumulation %d), same global batch and data position",
                    folder,
                    saved_world,
                    saved_micro,
                    s.train_iter.windows_per_step // (saved_dp * saved_micro),
                    acc.num_processes,
                    s.train_iter.batch_size,
                    s.accum,
                )
        state.load_state_dict(saved, folder)
        log.info("resumed from %s (step %d, %s tokens)", folder, state.step, f"{state.tokens_seen:,}")

    def save_final(self, out: StageOutput, state: TrainState) -> None:
        """Publish `final/` (model folder + STAGE.json) through the stage output; a collective. Every rank writes
        its weight shards into a staging folder beside it (consolidated by rank 0), which the main process then
        publishes with the config, tokenizer and marker."""
        s, acc = self.setup, self.setup.accelerator
        self.finish()
        final = s.recipe.layout.final
        attempt = f"{int(time.time())}"
        attempt = acc.gather_for_metrics([attempt])[0] if acc.num_processes > 1 else attempt
        staging = final.parent / f".{final.name}-weights.tmp-{attempt}"
        if acc.is_main_process:
            staging.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        state_io.write_weights(
            staging, state_io.model_state(s.model), ckpt.WEIGHTS, self.writer.group, acc.is_main_process
        )
        if acc.is_main_process:

            def produce(tmp: Path) -> dict:
                (staging / ckpt.WEIGHTS).replace(tmp / ckpt.WEIGHTS)
                ckpt.save_model_files(tmp, s.model, s.tokenizer)
                summary = {"steps": state.step, "tokens": state.tokens_seen}
                shares = s.train_iter.realised_shares()  # a staged mix (train.data_stages)
                if shares is not None:
                    summary["data_stages"] = shares
                return summary

            try:
                out.publish(
                    produce, sealed=True
                )  # its marker lists every file: a damaged final/ is retrained
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("final model: %s (%d steps, %s tokens)", final, state.step, f"{state.tokens_seen:,}")
        acc.wait_for_everyone()

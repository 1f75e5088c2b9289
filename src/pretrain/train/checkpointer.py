"""Checkpoints of a running training, across ranks: save, restore, resume point, and the final model.

`checkpoint.py` owns the on-disk format; this module owns the choreography: which rank writes what,
and the barriers between the steps, so every rank sees a checkpoint either complete or not at all.
"""

from __future__ import annotations

import time
from pathlib import Path

from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.train import checkpoint as ckpt
from pretrain.train.rng import set_rng_state
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainingError, TrainState

log = get_logger("pretrain.train")


class Checkpointer:
    def __init__(self, setup: TrainSetup):
        self.setup = setup
        self.root = setup.recipe.layout.checkpoints

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
        """Write `checkpoints/step-N/` from every rank; a collective. An OSError leaves no partial folder."""
        try:
            return self._save(state)
        except OSError as exc:
            if self.setup.accelerator.is_main_process:
                ckpt.discard_partial(self.root)
            previous = ckpt.list_checkpoints(self.root)
            keep = (
                f"{previous[-1]} is intact and is what `--resume auto` will use"
                if previous
                else "no earlier checkpoint exists"
            )
            raise TrainingError(
                f"writing checkpoint step {state.step} under {self.root} failed ({exc.strerror or exc}); "
                f"{keep}. Free disk space / fix the filesystem, then resume with --resume auto"
            ) from None

    def _save(self, state: TrainState) -> Path:
        s, acc = self.setup, self.setup.accelerator
        attempt = f"{int(time.time())}"
        attempt = acc.gather_for_metrics([attempt])[0] if acc.num_processes > 1 else attempt
        tmp = ckpt.tmp_dir_for(self.root, state.step, attempt)
        final = s.recipe.layout.checkpoint(state.step)
        if acc.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        ckpt.write_rank_state(tmp, acc.process_index, s.train_iter.state_dict())
        weights = ckpt.full_weights(s.model, s.sharded)
        if s.recipe.train.checkpoint.save_optimizer:
            ckpt.save_optimizer(tmp, s.model, s.optimizer, s.sharded, acc.is_main_process)
        if acc.is_main_process:
            ckpt.save_model_folder(tmp, acc.unwrap_model(s.model), s.tokenizer, weights)
            saved = state.state_dict(acc.num_processes, s.total_steps)
            ckpt.write_main_state(tmp, saved, ckpt.resolved_recipe_yaml(s.recipe))
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.finalize(tmp, final)
            ckpt.prune(self.root, s.recipe.train.checkpoint.keep_last)
        acc.wait_for_everyone()
        return final

    def restore(self, folder: Path, state: TrainState, with_data: bool, with_rng: bool | None = None) -> None:
        """Weights, optimizer and counters from `folder`; with_data: also this rank's loader position; with_rng
        (default: with_data): this rank's RNG streams (a branch takes them without the other run's data)."""
        s, acc = self.setup, self.setup.accelerator
        with_rng = with_data if with_rng is None else with_rng
        model = s.model if s.sharded else acc.unwrap_model(s.model)
        saved = ckpt.load_main_state(folder, model, s.optimizer, s.sharded)
        if with_data or with_rng:
            rank_state = ckpt.load_rank_state(folder, acc.process_index, acc.num_processes)
        if with_rng:
            set_rng_state(rank_state["rng"])
        if with_data:
            s.train_iter.load_state_dict(rank_state["loader"])
            saved_world = saved.get("world_size", acc.num_processes)
            if saved_world != acc.num_processes:
                saved_micro = rank_state["loader"]["batch_size"]
                log.info(
                    "%s was written by %d processes (micro batch %d, grad accumulation %d); resuming on %d "
                    "(micro batch %d, grad accumulation %d), same global batch and data position",
                    folder,
                    saved_world,
                    saved_micro,
                    s.train_iter.windows_per_step // (saved_world * saved_micro),
                    acc.num_processes,
                    s.train_iter.batch_size,
                    s.accum,
                )
        state.load_state_dict(saved, folder)
        log.info("resumed from %s (step %d, %s tokens)", folder, state.step, f"{state.tokens_seen:,}")

    def save_final(self, out: StageOutput, state: TrainState) -> None:
        """Publish `final/` (model folder + STAGE.json) through the stage output; a collective."""
        s, acc = self.setup, self.setup.accelerator
        acc.wait_for_everyone()
        weights = ckpt.full_weights(s.model, s.sharded)
        if acc.is_main_process:

            def produce(tmp: Path) -> dict:
                ckpt.save_model_folder(tmp, acc.unwrap_model(s.model), s.tokenizer, weights)
                summary = {"steps": state.step, "tokens": state.tokens_seen}
                shares = s.train_iter.realised_shares()  # a staged mix (train.data_stages)
                if shares is not None:
                    summary["data_stages"] = shares
                return summary

            out.publish(produce, sealed=True)  # its marker lists every file: a damaged final/ is retrained
            log.info(
                "final model: %s (%d steps, %s tokens)",
                s.recipe.layout.final,
                state.step,
                f"{state.tokens_seen:,}",
            )
        acc.wait_for_everyone()

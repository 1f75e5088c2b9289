"""Everything the loop needs, built once: accelerator, model, optimizer, loaders, lengths, checkpoint I/O.

Precision: `auto` is bf16 autocast on CUDA devices with bf16 support and fp32 elsewhere;
`bf16-true` keeps the parameters (and so the AdamW state) in bf16. Collective timeouts come from
`train.collective_timeout_s`, so a dead rank makes the others fail with an error instead of hanging.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import yaml

from pretrain.config import UNSUPPORTED_DEEPSPEED, Recipe
from pretrain.core.dist import force_cpu
from pretrain.core.errors import PretrainError, StageError
from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.hub.pusher import CheckpointPusher
from pretrain.modeling import build_model, count_parameters
from pretrain.planning.flops import device_peak_flops, flops_per_token
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.tokenizer import load_tokenizer, tokenizer_hash
from pretrain.train import checkpoint as ckpt
from pretrain.train.lock import RunLock
from pretrain.train.optim import build_optimizer
from pretrain.train.step import causal_lm_loss

log = get_logger("pretrain.train")


def fraction_steps(total: int, fraction: float | None, every: int | None) -> set[int]:
    """Steps at every `every` steps, or at each multiple of `fraction` of training (always incl. the end)."""
    if every:
        return set(range(every, total + 1, every)) | {total}
    if not fraction:
        return {total}
    n = max(1, round(1 / fraction))
    return {max(1, round(total * k / n)) for k in range(1, n + 1)}


def is_sharded(accelerator) -> bool:
    """FSDP: weights are gathered for saving, optimizer state is saved per rank, evaluation runs on all ranks."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def mixed_precision(recipe: Recipe) -> str:
    p = recipe.train.precision
    if p == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "bf16" if p == "bf16-mixed" else "no"


@dataclass
class TrainSetup:
    recipe: Recipe
    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tokenizer: object
    train_iter: TokenLoader
    total_steps: int
    accum: int
    tokens_per_step: int
    n_params: int
    flops_per_token: float
    peak_flops: float | None
    lock: RunLock | None
    evaluator: object = None
    pusher: object = None
    base_lrs: list[float] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.recipe.out

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def ckpt_root(self) -> Path:
        return self.recipe.layout.checkpoints

    @property
    def final_dir(self) -> Path:
        return self.recipe.layout.final

    @property
    def metrics_path(self) -> Path:
        return self.recipe.layout.metrics

    # ----------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict:
        cfg, acc = self.recipe.train, self.accelerator
        start = time.perf_counter()
        val = TokenLoader(
            self.recipe.layout.tokens,
            "val",
            cfg.seq_len,
            cfg.micro_batch_size,
            acc.process_index,
            acc.num_processes,
            document_positions=cfg.document_masking,
        )
        self.model.eval()
        total, n = torch.zeros((), device=self.device), 0
        for i, batch in enumerate(val):
            if i >= cfg.validation.batches:
                break
            with acc.autocast():
                total += causal_lm_loss(self.model, {k: v.to(self.device) for k, v in batch.items()})
            n += 1
        self.model.train()
        loss = float(acc.reduce(total / max(n, 1), reduction="mean"))
        split = val.manifest["splits"]["val"]
        bytes_per_token = split.get("bytes", 0) / max(split["tokens"], 1)
        bpb = loss / math.log(2) / bytes_per_token if bytes_per_token else None
        seconds = round(time.perf_counter() - start, 3)  # counted as evaluation overhead by the bench
        return {
            "val/loss": round(loss, 5),
            "val/bpb": round(bpb, 5) if bpb else None,
            "val/batches": n,
            "val/seconds": seconds,
        }

    # ----------------------------------------------------------- checkpoints
    @property
    def sharded(self) -> bool:
        return is_sharded(self.accelerator)

    def save_checkpoint(self, step: int, state: dict) -> Path:
        acc = self.accelerator
        attempt = f"{int(time.time())}"
        attempt = acc.gather_for_metrics([attempt])[0] if acc.num_processes > 1 else attempt
        tmp = ckpt.tmp_dir_for(self.ckpt_root, step, attempt)
        final = self.ckpt_root / ckpt.step_name(step)
        if acc.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        ckpt.write_rank_state(tmp, acc.process_index, self.train_iter.state_dict())
        weights = ckpt.full_weights(self.model, self.sharded)
        if self.recipe.train.checkpoint.save_optimizer:
            ckpt.save_optimizer(tmp, self.model, self.optimizer, self.sharded, acc.is_main_process)
        if acc.is_main_process:
            ckpt.save_model_folder(tmp, acc.unwrap_model(self.model), self.tokenizer, weights)
            ckpt.write_main_state(tmp, state, resolved_recipe_yaml(self.recipe))
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.finalize(tmp, final)
            ckpt.prune(self.ckpt_root, self.recipe.train.checkpoint.keep_last)
            if self.pusher is not None:
                self.pusher.submit(final, ckpt.step_name(step))
        acc.wait_for_everyone()
        return final

    def discard_partial_checkpoints(self) -> None:
        """Remove temp folders of a failed checkpoint write (they are never resumed from anyway)."""
        import shutil

        if self.accelerator.is_main_process:
            for tmp in self.ckpt_root.glob(".step-*.tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)

    def load_checkpoint(self, folder: Path, with_data: bool) -> dict:
        model = self.model if self.sharded else self.accelerator.unwrap_model(self.model)
        state = ckpt.load_main_state(folder, model, self.optimizer, self.sharded)
        if with_data:
            rank_state = ckpt.load_rank_state(folder, self.accelerator.process_index)
            self.train_iter.load_state_dict(rank_state["loader"])
            ckpt.set_rng_state(rank_state["rng"])
        return state

    def save_final(self, out: StageOutput, step: int, tokens_seen: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        weights = ckpt.full_weights(self.model, self.sharded)
        if acc.is_main_process:

            def produce(tmp: Path) -> dict:
                ckpt.save_model_folder(tmp, acc.unwrap_model(self.model), self.tokenizer, weights)
                return {"steps": step, "tokens": tokens_seen}

            out.publish(produce)
            log.info("final model: %s (%d steps, %s tokens)", self.final_dir, step, f"{tokens_seen:,}")
        acc.wait_for_everyone()


def resolved_recipe_yaml(recipe: Recipe) -> str:
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)


def build_setup(recipe: Recipe) -> TrainSetup:
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, set_seed

    cfg = recipe.train
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.collective_timeout_s))
    acc = Accelerator(
        cpu=force_cpu(),
        mixed_precision=mixed_precision(recipe),
        log_with=cfg.trackers or None,
        project_dir=str(recipe.out),
        kwargs_handlers=[timeout],
    )
    from accelerate.utils import DistributedType

    if (
        acc.distributed_type == DistributedType.DEEPSPEED
    ):  # launched with a DeepSpeed config of the user's own
        raise StageError(f"accelerate launch: {UNSUPPORTED_DEEPSPEED}")
    lock = RunLock(recipe.layout.lock) if acc.is_main_process else None
    if lock:
        lock.acquire()
    try:
        return _build(recipe, acc, lock, set_seed)
    except BaseException:
        if lock:
            lock.release()
        raise


def _build(recipe: Recipe, acc, lock, set_seed) -> TrainSetup:
    cfg = recipe.train
    set_seed(recipe.seed)
    try:
        accum = cfg.grad_accum_steps(acc.num_processes)
    except ValueError as exc:
        raise PretrainError(f"{recipe.source_label}: train.global_batch_tokens: {exc}") from None
    tok_dir = recipe.layout.tokenizer
    tokenizer = load_tokenizer(tok_dir)
    train_iter = TokenLoader(
        recipe.layout.tokens,
        "train",
        cfg.seq_len,
        cfg.micro_batch_size,
        acc.process_index,
        acc.num_processes,
        seed=recipe.seed,
        document_positions=cfg.document_masking,
        expected_tokenizer_hash=tokenizer_hash(tok_dir),
    )
    model = build_model(recipe, tokenizer)
    n_params, non_emb = count_parameters(model.config)
    fpt = flops_per_token(model.config, non_emb, cfg.seq_len)
    if cfg.precision == "bf16-true":
        model = model.to(torch.bfloat16)
    if cfg.liger_kernels:
        _apply_liger(model)
    model.to(acc.device)

    optimizer = build_optimizer(model, cfg.optimizer, acc.device.type)
    if cfg.compile:
        model = torch.compile(model)
    model, optimizer = acc.prepare(model, optimizer)
    model.train()
    if cfg.trackers:
        acc.init_trackers(recipe.name, config={"recipe": recipe.name, "params": n_params})
    evaluator = None
    if recipe.eval.enabled and recipe.eval.tasks + [t.name for t in recipe.eval.local_tasks]:
        evaluator = LoopEvaluator(recipe, tokenizer, acc, collective=is_sharded(acc))
    pusher = None
    if recipe.hub.push_checkpoints and acc.is_main_process:
        pusher = CheckpointPusher(recipe)
    peak = device_peak_flops(torch.cuda.get_device_name(acc.device) if acc.device.type == "cuda" else None)
    if acc.is_main_process:
        recipe.layout.resolved_recipe.write_text(resolved_recipe_yaml(recipe))
    return TrainSetup(
        recipe=recipe,
        accelerator=acc,
        model=model,
        optimizer=optimizer,
        tokenizer=tokenizer,
        train_iter=train_iter,
        total_steps=recipe.train.total_steps(n_params),
        accum=accum,
        tokens_per_step=cfg.global_batch_tokens,
        n_params=n_params,
        flops_per_token=fpt,
        peak_flops=peak * acc.num_processes if peak else None,
        lock=lock,
        evaluator=evaluator,
        pusher=pusher,
        base_lrs=[cfg.optimizer.lr for _ in optimizer.param_groups],
    )


def _apply_liger(model) -> None:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        raise PretrainError(
            "train.liger_kernels: true needs `pip install liger-kernel` (the `gpu` extra)"
        ) from None
    _apply_liger_kernel_to_instance(model=model)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # transformers prints a tqdm bar for every save_pretrained; the loop logs its own progress
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except ImportError:  # pragma: no cover
    pass

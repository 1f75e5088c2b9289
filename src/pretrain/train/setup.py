"""Everything the loop needs, built once: accelerator, model, optimizer, tokenizer, loaders, lengths.

Building only: nothing here trains, validates or checkpoints (see `loop.py`, `callbacks/`,
`checkpointer.py`). Precision: `auto` is bf16 autocast on CUDA devices with bf16 support and fp32
elsewhere; `bf16-true` keeps the parameters (and so the AdamW state) in bf16. Collective timeouts come
from `train.collective_timeout_s`, so a dead rank makes the others fail with an error instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from pretrain.config import Recipe
from pretrain.config.checks import FUSED_CE_UNDER_FSDP, MUON_UNDER_TP, UNSUPPORTED_DEEPSPEED
from pretrain.config.expert_checks import check_built_experts
from pretrain.config.parallelism import USE_FSDP, USE_PARALLELISM_CONFIG, MeshShape, shape_for_launch
from pretrain.core.dist import force_cpu, init_process_group, world_size
from pretrain.core.errors import PretrainError, StageError
from pretrain.core.lock import RunLock
from pretrain.core.progress import get_logger
from pretrain.evaluation.data_parallel import DataParallelEval
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.hub.pusher import CheckpointPusher
from pretrain.modeling import build_model, count_parameters
from pretrain.modeling.parent import load_parent
from pretrain.scaling.flops import device_peak_flops, flops_per_token
from pretrain.scaling.moe import MoESpec, active_non_embedding, moe_spec
from pretrain.tokens.loader import TokenLoader, WindowLoader
from pretrain.tokens.stage_plan import loader_stages
from pretrain.tokens.stages import StagedTokenLoader
from pretrain.tokens.tokenizer import load_tokenizer, tokenizer_hash
from pretrain.train.activation_checkpointing import apply_activation_checkpointing
from pretrain.train.checkpoint import resolved_recipe_yaml, upload_filter
from pretrain.train.context_stages import ContextStages
from pretrain.train.fused_loss import FusedHead
from pretrain.train.optim import build_optimizer
from pretrain.train.parallel.mesh import Parallelism, build_parallelism
from pretrain.train.parallel.parallelize import bf16_mixed_policy, parallelize
from pretrain.train.precision import cast_parameters_to_bf16, mixed_precision
from pretrain.train.threads import choose_cpu_threads
from pretrain.train.trackers import flat_recipe, require_trackers

if TYPE_CHECKING:  # accelerate is imported when training starts, not with every CLI command (start-up time)
    from accelerate import Accelerator

log = get_logger("pretrain.train")


def launch_mesh(recipe: Recipe) -> MeshShape:
    """The mesh this launch asks for (`config/parallelism.py`), read before accelerate starts; accelerate's own
    FSDP and parallelism-config handling is then switched off (it refuses CPU ranks, and the model is
    parallelised here, the same way on every device)."""
    where = f"{recipe.source_label}: accelerate_config {recipe.accelerate_config}"
    shape = shape_for_launch(world_size(), recipe.accelerate_settings(), os.environ, where)
    for variable in (USE_PARALLELISM_CONFIG, USE_FSDP):
        os.environ[variable] = "false"
    return shape


def prepare_process() -> None:
    """Process-wide settings for a training process; called once when training starts."""
    # the fast tokenizer's thread pool does not survive the loader's / launcher's forks
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers prints a tqdm bar for every save_pretrained; the loop logs its own progress
    hf_logging.disable_progress_bar()
    # on a busy machine, torch's one-thread-per-core stalls at every barrier (4.2x slower at load 14, 2 cores)
    choose_cpu_threads()


@dataclass
class TrainSetup:
    recipe: Recipe
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    tokenizer: PreTrainedTokenizerFast
    parallelism: Parallelism
    train_iter: WindowLoader
    total_steps: int
    accum: int  # micro batches per optimizer step on each rank
    tokens_per_step: int
    n_params: int
    flops_per_token: float
    peak_flops: float | None  # of all ranks together; None when the device's peak is unknown
    lock: RunLock | None  # held by the main process only
    evaluator: LoopEvaluator | None = None
    pusher: CheckpointPusher | None = None  # main process only
    base_lrs: list[float] = field(default_factory=list)
    parent: dict | None = None  # continued pretraining: the parent model, revision and commit (model card)
    fused_head: FusedHead | None = None  # train.fused_cross_entropy: the LM head fused into the loss
    context: ContextStages | None = None  # data stages that change the sequence length or the RoPE
    moe: MoESpec | None = None  # a mixture of experts: its routing and router-loss weights

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def sharded(self) -> bool:
        """No rank holds whole weight matrices (FSDP shards or tensor-parallel slices)."""
        return self.parallelism.sharded


def build_setup(recipe: Recipe) -> TrainSetup:
    """Start accelerate, take the run lock (main process) and build everything; the lock is released on failure."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    cfg = recipe.train
    require_trackers(cfg.trackers)
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.collective_timeout_s))
    init_process_group(timedelta(seconds=cfg.collective_timeout_s))  # a restarted attempt's own store keys
    shape = launch_mesh(recipe)
    acc = Accelerator(
        cpu=force_cpu(),
        mixed_precision=mixed_precision(recipe),
        log_with=cfg.trackers or None,
        project_dir=str(recipe.layout.trackers),
        kwargs_handlers=[timeout],
    )
    if (
        acc.distributed_type == DistributedType.DEEPSPEED
    ):  # launched with a DeepSpeed config of the user's own
        raise StageError(f"accelerate launch: {UNSUPPORTED_DEEPSPEED}")
    lock = RunLock(recipe.layout.lock) if acc.is_main_process else None
    if lock:
        lock.acquire("pretrain train")
    try:
        return _build(recipe, acc, lock, shape)
    except BaseException:
        if lock:
            lock.release()
        raise


def _build(recipe: Recipe, acc: Accelerator, lock: RunLock | None, shape: MeshShape) -> TrainSetup:
    from accelerate.utils import set_seed

    cfg = recipe.train
    set_seed(recipe.train_seed)
    par = build_parallelism(shape, acc.device.type)
    try:
        accum = cfg.grad_accum_steps(par.data_world)
    except ValueError as exc:
        raise PretrainError(f"{recipe.source_label}: train.global_batch_tokens: {exc}") from None
    tok_dir = recipe.layout.tokenizer
    tokenizer = load_tokenizer(tok_dir)
    parent = load_parent(recipe, tokenizer) if recipe.model.init_from else None
    model = parent.model if parent else build_model(recipe, tokenizer)
    check_built_experts(model.config, shape, recipe.source_label)
    apply_activation_checkpointing(model, recipe.model.gradient_checkpointing)
    n_params, non_emb = count_parameters(model.config)
    total_steps = recipe.train.total_steps(n_params)
    train_iter = build_train_loader(recipe, par.data_rank, par.data_world, total_steps)
    moe = moe_spec(model.config)
    active = active_non_embedding(model.config) if moe else non_emb  # FLOPs count the experts a token uses
    fpt = flops_per_token(model.config, active, cfg.seq_len)
    context = ContextStages.build(model, recipe, active)
    if cfg.precision == "bf16-true":
        cast_parameters_to_bf16(model)
    if cfg.liger_kernels:
        _apply_liger(model)
    model.to(acc.device)

    if cfg.optimizer.name == "muon" and par.tensor_parallel:
        raise StageError(f"train.optimizer.name: {MUON_UNDER_TP} ({shape.describe()})")
    fused_head = build_fused_head(model, recipe, acc.device.type, par.sharded)
    # the head's logits stay vocab-sharded into the loss, unless the z-loss needs them whole
    par.loss_parallel = par.tensor_parallel and fused_head is None and not cfg.z_loss
    sharded_bf16 = par.data_parallel and par.sharded and mixed_precision(recipe) == "bf16"
    parallelize(
        model, par, compile_blocks=cfg.compile, mp_policy=bf16_mixed_policy() if sharded_bf16 else None
    )
    if par.expert_parallel and acc.is_main_process:
        experts = moe.num_experts if moe else 0
        log.info(
            "expert parallel: %d experts per MoE layer over %d ranks (%d each, tokens by all-to-all), each split "
            "FSDP-sharded over %d copies",
            experts,
            shape.ep,
            experts // shape.ep,
            shape.expert_copies,
        )
    optimizer = build_optimizer(model, cfg.optimizer, acc.device.type)  # over the parallelised parameters
    model.train()
    if cfg.trackers:
        acc.init_trackers(recipe.name, config={**flat_recipe(recipe), "params": n_params})
    evaluator = None
    if recipe.eval.enabled and recipe.eval.tasks + [t.name for t in recipe.eval.local_tasks]:
        evaluator = LoopEvaluator(
            recipe, tokenizer, acc, data_parallel_eval(par) if acc.num_processes > 1 else None
        )
    pusher = None
    if recipe.hub.push_checkpoints and acc.is_main_process:
        pusher = CheckpointPusher(recipe.hub.repo_id, recipe.hub.private, upload_filter())
    peak = device_peak_flops(torch.cuda.get_device_name(acc.device) if acc.device.type == "cuda" else None)
    if acc.is_main_process:
        recipe.layout.resolved_recipe.write_text(resolved_recipe_yaml(recipe))
    return TrainSetup(
        recipe=recipe,
        accelerator=acc,
        model=model,
        optimizer=optimizer,
        tokenizer=tokenizer,
        parallelism=par,
        train_iter=train_iter,
        total_steps=total_steps,
        accum=accum,
        tokens_per_step=cfg.global_batch_tokens,
        n_params=n_params,
        flops_per_token=fpt,
        peak_flops=peak * acc.num_processes if peak else None,
        lock=lock,
        evaluator=evaluator,
        pusher=pusher,
        base_lrs=[group["lr"] for group in optimizer.param_groups],  # peak lrs (Muon's differs from AdamW's)
        parent=parent.source if parent else None,
        fused_head=fused_head,
        context=context,
        moe=moe,
    )


def data_parallel_eval(par: Parallelism) -> DataParallelEval:
    """The in-loop evaluation's split: by data-parallel rank; in lockstep when forwards gather FSDP shards."""
    return DataParallelEval(par.data_rank, par.data_world, par.data_group, lockstep=par.shape.dp_shard > 1)


def build_fused_head(
    model: torch.nn.Module, recipe: Recipe, device_type: str, sharded: bool
) -> FusedHead | None:
    """`train.fused_cross_entropy` decided and, when on, installed on the unwrapped model (before DDP or
    compile wrap it). `auto`: on CPU without FSDP or Liger, for a model whose logits are its plain linear head
    of the hidden states; `true` where it cannot run is an error naming why."""
    cfg = recipe.train
    choice = cfg.fused_cross_entropy
    if choice is False or cfg.liger_kernels:  # Liger patches in its own fused loss
        return None
    if sharded:
        if choice is True:
            raise StageError(f"train.fused_cross_entropy: {FUSED_CE_UNDER_FSDP}")
        return None
    if choice == "auto" and device_type != "cpu":
        return None
    try:
        return FusedHead.install(model)
    except ValueError as exc:
        if choice is True:
            raise StageError(
                f"{recipe.source_label}: train.fused_cross_entropy: true, but {exc}; set it to auto or false"
            ) from None
        log.info("train.fused_cross_entropy auto: the plain loss, because %s", exc)
        return None


def build_train_loader(recipe: Recipe, rank: int, world_size: int, total_steps: int) -> WindowLoader:
    """The train split's loader: the packed mix as one stream, or with `train.data_stages` the staged mix
    drawn from the per-source shards (its stage boundaries fall on optimizer steps of `total_steps`)."""
    cfg = recipe.train
    common = dict(
        seq_len=cfg.seq_len,
        batch_size=cfg.micro_batch_size,
        rank=rank,
        world_size=world_size,
        seed=recipe.train_seed,
        document_positions=cfg.document_masking,
        expected_tokenizer_hash=tokenizer_hash(recipe.layout.tokenizer),
        windows_per_step=cfg.global_batch_tokens // cfg.seq_len,
    )
    if cfg.data_stages:
        return StagedTokenLoader(recipe.layout.tokens, loader_stages(cfg, total_steps), **common)
    return TokenLoader(recipe.layout.tokens, "train", **common)


def _apply_liger(model: torch.nn.Module) -> None:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        raise PretrainError(
            "train.liger_kernels: true needs `pip install liger-kernel` (the `gpu` extra)"
        ) from None
    _apply_liger_kernel_to_instance(model=model)

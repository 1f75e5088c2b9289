"""Recipe section `train`: batch geometry, length, optimiser, schedule, precision, checkpoints, stability."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrain.config.base import SEED_LIMIT, Section
from pretrain.config.optimizer import OptimizerConfig, ScheduleConfig
from pretrain.config.stability import FaultInjectionConfig, StabilityConfig
from pretrain.config.stages import DataStage

# the run's length is given by exactly one of these train keys
LENGTH_KEYS = ("tokens", "steps", "tokens_per_param")


class CheckpointConfig(Section):
    every_steps: int | None = Field(
        None,
        gt=0,
        description="save every N optimizer steps (and at the end); takes precedence over every_fraction",
    )
    every_fraction: float | None = Field(
        0.1,
        gt=0,
        le=1,
        description="save at every multiple of this fraction of training (0-1) when every_steps is null; "
        "both null = only the final checkpoint",
    )
    keep_last: int = Field(
        3, ge=1, description="newest complete checkpoints kept on disk; older ones are deleted"
    )
    async_save: bool = Field(
        True,
        description="write checkpoints in the background: each rank stages a CPU copy of its weight and optimizer "
        "shards and training goes on while they are written (at most one save in flight); false = training "
        "waits for each write",
    )
    save_optimizer: bool = Field(
        True,
        description="also write trainer_state/ (optimizer, scheduler, data position, RNG) for exact resume "
        "and rollbacks; false saves disk but a run cannot resume from the checkpoint",
    )


class ValidationConfig(Section):
    every_fraction: float = Field(
        0.1,
        gt=0,
        le=1,
        description="compute val loss and bits/byte at every multiple of this fraction of training (0-1)",
    )
    batches: int = Field(
        20,
        gt=0,
        description="micro batches of the val split per validation, split over the data-parallel ranks (each "
        "reads batches / ranks of them; a multiple of the ranks reads exactly these); more gives a less noisy "
        "val loss but takes longer",
    )
    per_source_batches: int = Field(
        2,
        ge=0,
        description="micro batches of each source's own val documents per validation, logged as "
        "`val/<source>/loss` and `val/<source>/bpb` beside the mixed split's (windows spread evenly over the "
        "source's val stream, the same windows every pass); 0 = the mixed split only",
    )


class TrainConfig(Section):
    seq_len: int = Field(
        gt=0,
        description="tokens per training sequence (context length); at most model.max_position_embeddings",
    )
    micro_batch_size: int = Field(
        gt=0,
        description="sequences per device per forward pass; the largest that fits in memory "
        "(gradient accumulation makes up the rest of the global batch)",
    )
    global_batch_tokens: int = Field(
        gt=0,
        description="tokens per optimizer step across all devices; a multiple of "
        "micro_batch_size * seq_len * processes. ~0.5-4M tokens for 100M-1B models",
    )
    tokens: int | None = Field(
        None,
        gt=0,
        description="training length in tokens; set exactly one of tokens, steps, tokens_per_param",
    )
    steps: int | None = Field(
        None, gt=0, description="training length in optimizer steps (one of tokens, steps, tokens_per_param)"
    )
    tokens_per_param: float | None = Field(
        None,
        gt=0,
        description="training length as tokens per model parameter, e.g. 20 for Chinchilla-optimal "
        "(one of tokens, steps, tokens_per_param)",
    )
    seed: int | None = Field(
        None,
        ge=0,
        lt=SEED_LIMIT,
        description="seeds model init and the training data order; null = the recipe's `seed`. Set it (not "
        "`seed`) for a replicate run: the curated, tokenized and packed data (and the val split) stay the same",
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="optimizer: AdamW, or Muon for the hidden matrices"
    )
    z_loss: float = Field(
        0.0,
        ge=0,
        description="weight of the z-loss, mean(logsumexp(logits)^2), added to the cross-entropy (PaLM, OLMo "
        "use 1e-4) to keep the output logits from drifting large; 0 = off. Logged as `z_loss`; `loss` stays "
        "the cross-entropy",
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="learning-rate schedule: warmup, shape, decay"
    )
    precision: Literal["auto", "fp32", "bf16-mixed", "bf16-true", "bf16-mixed-if-native"] = Field(
        "auto",
        description="`auto` = bf16-mixed on CUDA with bf16 support, fp32 elsewhere; `bf16-mixed` = fp32 "
        "weights with bf16 autocast; `bf16-true` = bf16 weights too (less memory, less precise updates); "
        "`bf16-mixed-if-native` = bf16-mixed where the device multiplies bf16 natively (CUDA with bf16, CPUs "
        "with AVX512-BF16 or AMX), fp32 elsewhere: on other CPUs bf16 matmuls are emulated and slower than fp32",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model: faster steps on GPUs after a compile warm-up; off for CPU demos",
    )
    liger_kernels: bool = Field(
        False,
        description="patch the model with Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused "
        "cross-entropy) to save memory and time on GPUs; needs `pip install liger-kernel` (the gpu extra)",
    )
    fused_cross_entropy: Literal["auto"] | bool = Field(
        "auto",
        description="compute the LM head, the cross-entropy and the z-loss together, chunk by chunk of tokens, so "
        "the full tokens x vocab logits never exist (same loss and gradients to fp32 rounding): `auto` = on for "
        "training on CPU without FSDP (2 cores: 1.44x the plain path's step at 49,152 vocab, 1.12x at tiny's "
        "4,096), off on GPUs (unmeasured there; "
        "liger_kernels brings its own fused loss); true forces it (not under FSDP, which shards the head's "
        "weight, nor with liger_kernels); false = full logits, then F.cross_entropy",
    )
    grad_clip: float | None = Field(
        1.0,
        gt=0,
        description="clip the global gradient L2 norm to this value; null = no clipping (the norm is still logged)",
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="when checkpoints are saved and how many are kept"
    )
    stability: StabilityConfig = Field(
        default_factory=StabilityConfig, description="loss-spike guard: skipped updates and rollbacks"
    )
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig, description="held-out validation loss during training"
    )
    fault_injection: FaultInjectionConfig = Field(
        default_factory=FaultInjectionConfig, description="testing hook: faults injected at chosen steps"
    )
    log_every: int = Field(
        10, gt=0, description="write metrics.jsonl, the trackers and a log line every N optimizer steps"
    )
    trackers: list[Literal["tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim"]] = Field(
        default_factory=list,
        description="accelerate experiment trackers to log to (each needs its package); "
        "metrics.jsonl is always written",
    )
    document_masking: bool = Field(
        False,
        description="pass position_ids that restart at each document of a packed sequence, so attention stays "
        "within documents: transformers turns restarting positions into a block-diagonal causal mask for "
        "sdpa / eager and into variable-length attention for flash_attention_2",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="when a process of a multi-process run dies (crash, lost node), the launcher restarts all "
        "of them this many times at most (the relaunching `pretrain` process supervises the launch; an error of "
        "the input is never retried); each "
        "restart resumes from the last complete checkpoint and is counted in metrics and the model card",
    )
    data_stages: list[DataStage] = Field(
        default_factory=list,
        description="staged data mix drawn at load time from the per-source token shards, in order (e.g. a "
        "last stage on high-quality sources during the WSD decay); empty = one stage, the packed mix as is",
    )
    collective_timeout_s: int = Field(
        600,
        gt=0,
        description="seconds a collective (all-reduce, barrier) waits before failing, so a dead rank makes "
        "the others exit with an error instead of hanging; raise it for slow checkpoint writes",
    )

    @model_validator(mode="after")
    def _one_fused_loss(self) -> TrainConfig:
        if self.liger_kernels and self.fused_cross_entropy is True:
            raise ValueError(
                "fused_cross_entropy: true and liger_kernels: true both replace the loss; set "
                "fused_cross_entropy to auto (Liger's fused loss is then used) or liger_kernels to false"
            )
        return self

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        given = [k for k in LENGTH_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of train.tokens, train.steps, train.tokens_per_param"
                + (f" (got {', '.join(given)})" if given else "")
            )
        per_micro = self.micro_batch_size * self.seq_len
        if self.global_batch_tokens % per_micro:
            raise ValueError(
                f"global_batch_tokens={self.global_batch_tokens} is not a multiple of "
                f"micro_batch_size*seq_len={per_micro}; make it one (e.g. {per_micro * max(1, self.global_batch_tokens // per_micro)})"
            )
        return self

    def total_steps(self, n_params: int) -> int:
        """Optimizer steps of the run: `steps`, or `tokens` / `tokens_per_param` in whole global batches."""
        if self.steps:
            return self.steps
        tokens = self.tokens if self.tokens else int(self.tokens_per_param * n_params)
        return max(1, tokens // self.global_batch_tokens)

    def stage_shares(self) -> list[float]:
        """Each data stage's fraction of the run's tokens (token counts normalised by their sum)."""
        sizes = [st.share if st.share is not None else float(st.tokens) for st in self.data_stages]
        total = sum(sizes)
        return [size / total for size in sizes]

    def stage_end_steps(self, total_steps: int) -> list[int]:
        """Optimizer step at which each data stage ends (exclusive): cumulative shares of `total_steps`,
        rounded; the last stage ends at `total_steps`. Empty without stages."""
        ends, cumulative = [], 0.0
        for share in self.stage_shares():
            cumulative += share
            ends.append(int(round(cumulative * total_steps)))
        if ends:
            ends[-1] = total_steps
        return ends

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro batches per optimizer step on each rank; raises ValueError if the batch does not divide."""
        per_step = self.micro_batch_size * self.seq_len * world_size
        if self.global_batch_tokens % per_step:
            raise ValueError(
                f"train.global_batch_tokens={self.global_batch_tokens} is not divisible by "
                f"micro_batch_size*seq_len*world_size={per_step} (world_size={world_size}); "
                "change the batch, the micro batch or the number of processes"
            )
        return self.global_batch_tokens // per_step

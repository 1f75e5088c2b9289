"""Recipe section `train`: batch geometry, length, optimiser, schedule, precision, checkpoints, stability."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrain.config.base import Section


class OptimizerConfig(Section):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.95], min_length=2, max_length=2)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    no_decay: list[Literal["norm", "bias", "embedding"]] = Field(
        default_factory=lambda: ["norm", "bias", "embedding"]
    )
    fused: Literal["auto"] | bool = Field("auto", description="auto = fused AdamW on CUDA, foreach elsewhere")


class ScheduleConfig(Section):
    name: Literal["wsd", "cosine", "linear", "constant"] = "wsd"
    warmup_steps: int | None = Field(None, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="used when warmup_steps is not set")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of training spent decaying")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of the peak")


class CheckpointConfig(Section):
    every_steps: int | None = Field(None, gt=0)
    every_fraction: float | None = Field(0.1, gt=0, le=1)
    keep_last: int = Field(3, ge=1)
    save_optimizer: bool = True


class StabilityConfig(Section):
    enabled: bool = True
    window: int = Field(50, ge=5, description="steps in the running loss statistics")
    zscore: float = Field(6.0, gt=0, description="loss z-score above which the update is skipped")
    min_history: int = Field(20, ge=2, description="steps before spike detection starts")
    spikes_before_rollback: int = Field(
        3, ge=1, description="consecutive skipped steps that trigger a rollback"
    )
    max_rollbacks: int = Field(3, ge=0)
    skip_window_steps: int = Field(
        0, ge=0, description="extra batches skipped after a rollback (0 = the spiky window)"
    )


class ValidationConfig(Section):
    every_fraction: float = Field(0.1, gt=0, le=1)
    batches: int = Field(20, gt=0, description="val batches per validation (micro batches)")


class TrainConfig(Section):
    seq_len: int = Field(gt=0)
    micro_batch_size: int = Field(gt=0, description="sequences per device per forward pass")
    global_batch_tokens: int = Field(gt=0, description="tokens per optimizer step across all devices")
    tokens: int | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)
    tokens_per_param: float | None = Field(None, gt=0, description="e.g. 20 for Chinchilla-optimal")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    precision: Literal["auto", "fp32", "bf16-mixed", "bf16-true"] = Field(
        "auto", description="auto = bf16-mixed on CUDA with bf16 support, fp32 elsewhere"
    )
    compile: bool = False
    liger_kernels: bool = False
    grad_clip: float | None = Field(1.0, gt=0)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    log_every: int = Field(10, gt=0)
    trackers: list[Literal["tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim"]] = Field(
        default_factory=list
    )
    document_masking: bool = Field(
        False, description="pass document-aware position_ids so attention stays in-document"
    )
    collective_timeout_s: int = Field(
        600, gt=0, description="a dead rank makes the others fail after this long"
    )

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        given = [k for k in ("tokens", "steps", "tokens_per_param") if getattr(self, k) is not None]
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

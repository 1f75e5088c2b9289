"""Recipe section `train`: batch geometry, length, optimiser, schedule, precision, checkpoints, stability."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pretrain.config.base import Section

# the run's length is given by exactly one of these train keys
LENGTH_KEYS = ("tokens", "steps", "tokens_per_param")


class MuonConfig(Section):
    """Muon (`torch.optim.Muon`): momentum, then the update orthogonalised by Newton-Schulz iterations."""

    lr: float = Field(
        0.02,
        gt=0,
        description="Muon's peak learning rate for the hidden matrices (the schedule scales it like the AdamW "
        "lr); 0.02 with adjust_lr `original` is the usual starting point",
    )
    momentum: float = Field(0.95, ge=0, lt=1, description="Muon momentum (decay of the gradient average)")
    nesterov: bool = Field(True, description="Nesterov momentum, as in the reference Muon")
    ns_steps: int = Field(
        5, ge=1, le=20, description="Newton-Schulz iterations that orthogonalise each update (5 is standard)"
    )
    adjust_lr: Literal["original", "match_rms_adamw"] = Field(
        "original",
        description="per-matrix lr scale: `original` = sqrt(max(1, rows/cols)) (Keller Jordan); "
        "`match_rms_adamw` = 0.2*sqrt(max(rows, cols)), which makes AdamW's lr and weight decay usable as is "
        "(Moonshot)",
    )
    weight_decay: float = Field(
        0.0,
        ge=0,
        description="decoupled weight decay of the Muon matrices (multiplied by the unscaled Muon lr each step)",
    )


class OptimizerConfig(Section):
    name: Literal["adamw", "muon"] = Field(
        "adamw",
        description="`adamw`: torch AdamW for every parameter; `muon`: torch Muon (see `muon`) for the 2-D "
        "hidden matrices and AdamW (the keys below) for embeddings, the LM head, norms and biases",
    )
    lr: float = Field(
        3e-3,
        gt=0,
        description="peak learning rate (after warmup); lower it for bigger models (e.g. 1e-3 at 1B)",
    )
    betas: list[float] = Field(
        default_factory=lambda: [0.9, 0.95],
        min_length=2,
        max_length=2,
        description="AdamW [beta1, beta2]: decay rates of the gradient mean and square averages; "
        "0.95 for beta2 is steadier than 0.999 for LLMs",
    )
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon added to the denominator")
    weight_decay: float = Field(
        0.1, ge=0, description="decoupled weight decay on the decayed matrices (see no_decay); 0 turns it off"
    )
    no_decay: list[Literal["norm", "bias", "embedding"]] = Field(
        default_factory=lambda: ["norm", "bias", "embedding"],
        description="parameter kinds trained without weight decay: `norm` (1-D norm gains), `bias`, "
        "`embedding` (incl. a tied LM head); remove `embedding` to decay the embeddings too",
    )
    fused: Literal["auto"] | bool = Field(
        "auto",
        description="fused AdamW kernel (one kernel for all parameters): `auto` = fused on CUDA and CPU "
        "(4-5x faster updates on CPU), foreach elsewhere; true forces it, false always uses foreach",
    )
    muon: MuonConfig = Field(
        default_factory=MuonConfig, description="Muon settings, used when name is `muon`"
    )


class ScheduleConfig(Section):
    name: Literal["wsd", "cosine", "linear", "constant"] = Field(
        "wsd",
        description="lr shape after linear warmup: `wsd` (hold the peak, decay linearly over the last "
        "decay_fraction; cooldowns can branch from any stable checkpoint), `cosine`, `linear` or `constant`",
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="linear warmup length in optimizer steps; null = warmup_fraction of the run"
    )
    warmup_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="warmup length as a fraction of the run's optimizer steps (0-1), used when warmup_steps "
        "is null; lengthen it if the loss spikes early",
    )
    decay_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="wsd only: fraction of the run's steps (0-1) at the end spent decaying linearly to "
        "min_lr_ratio; 0.1-0.2 is usual",
    )
    min_lr_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="final lr as a fraction of the peak (0-1) for wsd, cosine and linear; 0 decays fully, "
        "0.1 is common for cosine",
    )


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
    save_optimizer: bool = Field(
        True,
        description="also write trainer_state/ (optimizer, scheduler, data position, RNG) for exact resume "
        "and rollbacks; false saves disk but a run cannot resume from the checkpoint",
    )


class StabilityConfig(Section):
    enabled: bool = Field(
        True,
        description="skip updates with a non-finite or spiking loss, and roll back after repeated spikes",
    )
    window: int = Field(
        50,
        ge=5,
        description="accepted steps whose losses form the running mean and std a spike is measured against",
    )
    zscore: float = Field(
        6.0,
        gt=0,
        description="skip the update when the loss is more than this many standard deviations above the "
        "running mean; raise it if normal noise is being skipped",
    )
    grad_norm_zscore: float | None = Field(
        6.0,
        gt=0,
        description="also skip the update when the gradient norm (before clipping) is more than this many "
        "standard deviations above the mean of the last `window` accepted steps' norms (checked once there are "
        "`window` of them): it often blows up a step before the loss does; null watches the loss only",
    )
    min_history: int = Field(
        20,
        ge=2,
        description="accepted steps needed before spike detection starts (non-finite losses always count)",
    )
    spikes_before_rollback: int = Field(
        3, ge=1, description="consecutive skipped steps that trigger a rollback to the last good checkpoint"
    )
    max_rollbacks: int = Field(
        3,
        ge=0,
        description="rollbacks to the last good checkpoint allowed per run; then training stops with an error",
    )
    skip_window_steps: int = Field(
        0,
        ge=0,
        description="extra optimizer steps of data skipped after a rollback, beyond the spiky window the "
        "loader has already passed (0 = none)",
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
        description="micro batches of the val split per validation; more gives a less noisy val loss but takes longer",
    )


class FaultInjectionConfig(Section):
    """Testing hook for the fault-tolerance tests and bench: break chosen steps on purpose; empty in real runs.

    Steps count optimizer-step attempts (a rollback does not rewind them), so each fault fires once.
    """

    nan_at: list[int] = Field(default_factory=list, description="attempts whose loss is made NaN")
    spike_at: list[int] = Field(
        default_factory=list, description="attempts whose loss is multiplied by spike_scale before backward"
    )
    grad_spike_at: list[int] = Field(
        default_factory=list,
        description="attempts whose gradients (not loss value) are multiplied by spike_scale: a gradient-norm "
        "spike the loss does not show",
    )
    spike_scale: float = Field(
        50.0, gt=0, description="loss multiplier of a spike_at / grad_spike_at attempt"
    )
    die_at: int | None = Field(
        None, gt=0, description="attempt at which the process exits at once (code 17), as a crashed node"
    )
    die_rank: int | None = Field(None, ge=0, description="the rank that dies at die_at (none = every rank)")


class DataStage(Section):
    """One stage of a staged data mix: a slice of the run's training tokens drawn with its own source weights.

    Stages live under `train` (not `data`): they say when in training each mix is read, next to the run's
    length and lr schedule, and changing them re-runs training only, never curation or packing (the
    `data` section is the fingerprint of those stages)."""

    name: str | None = Field(
        None, description="label in metrics.jsonl, reports and the model card; null = `stage-<index>`"
    )
    share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="this stage's fraction of the run's training tokens (0-1]; the shares of all stages add "
        "up to 1. Give share or tokens, not both",
    )
    tokens: int | None = Field(
        None,
        gt=0,
        description="this stage's training tokens; the stages' tokens add up to train.tokens (or "
        "train.steps x global_batch_tokens). Give share or tokens, not both",
    )
    weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        min_length=1,
        description="source name (as in data.sources) -> weight (> 0); normalised to token shares of the "
        "stage's global batches. Sources left out are not read in this stage",
    )

    @model_validator(mode="after")
    def _one_length(self) -> DataStage:
        if (self.share is None) == (self.tokens is None):
            raise ValueError("give exactly one of share (fraction of the run's tokens) or tokens")
        return self

    def weight_shares(self) -> dict[str, float]:
        """The weights normalised to sum to 1 (the token share each source aims at)."""
        total = sum(self.weights.values())
        return {name: w / total for name, w in self.weights.items()}


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
        "of them this many times at most (accelerate launch --max_restarts, set by the relaunch); each "
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

"""Recipe keys `train.optimizer` and `train.schedule`: the optimizer (AdamW, or Muon for the hidden matrices) and
the learning-rate schedule.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pretrain.config.base import Section


class MuonConfig(Section):
    """Muon (`train.muon.DistributedMuon`, torch.optim.Muon's arithmetic): momentum, then the update orthogonalised
    by Newton-Schulz iterations; under FSDP2 each sharded matrix is orthogonalised whole on one owner rank."""

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

"""`train.data_stages`: one stage of a staged data mix, and the geometry each stage trains with.

A stage is a slice of the run's tokens drawn with its own source weights; a stage may also extend the context
(SmolLM3, Llama 3, OLMo 2 and Qwen3 end pretraining so): a longer `seq_len`, a new RoPE base (`rope_theta`) or
a `rope_scaling` of the architecture. What a stage leaves unset is the stage before it's (the first stage's:
the recipe's `train` and `model` values), so a context once extended stays extended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from pretrain.config.base import Section


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
    weights_from: str | None = Field(
        None,
        description="where these weights came from, shown by `pretrain plan` and the model card (`pretrain "
        "mixture` writes the path of its proposal.json and its measured figures); null = set by hand",
    )
    seq_len: int | None = Field(
        None,
        gt=0,
        description="context extension: this stage's tokens per sequence (>= the stage before's; at most "
        "model.max_position_embeddings). The packed documents are re-windowed at this length, from text held "
        "for it (each source split between its stages' lengths as they read it), and the global batch keeps "
        "train.global_batch_tokens (fewer, longer sequences); null = the stage before's",
    )
    micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="sequences per device per forward pass in this stage; null = as many as keep "
        "train.micro_batch_size x train.seq_len tokens per forward pass (at least 1)",
    )
    document_masking: bool | None = Field(
        None,
        description="attention within documents in this stage (as train.document_masking); null = on in a "
        "stage longer than train.seq_len (long windows pack many documents), else train.document_masking",
    )
    rope_theta: float | None = Field(
        None,
        gt=0,
        description="RoPE base frequency from this stage on (e.g. 10,000 -> 500,000 for a longer context, as "
        "Llama 3 / SmolLM3 raise it); the saved model's config carries it. null = the stage before's",
    )
    rope_scaling: dict[str, float | int | str] | None = Field(
        None,
        description="a transformers rope_parameters scaling from this stage on, e.g. {rope_type: yarn, "
        "factor: 4.0, original_max_position_embeddings: 256}; its rope_type must be one transformers knows "
        "(linear, dynamic, yarn, longrope, llama3) for a model with RoPE. null = the stage before's",
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


@dataclass(frozen=True)
class StageGeometry:
    """How a stage trains: its sequence length, micro batch, document masking, and RoPE overrides."""

    seq_len: int
    micro_batch_size: int
    document_masking: bool
    rope_theta: float | None = None  # None: the model's own
    rope_scaling: dict[str, Any] | None = None

    @property
    def rope(self) -> dict[str, Any] | None:
        """The RoPE fields this stage sets on the model's `rope_parameters` (None: the model's own)."""
        if self.rope_theta is None and self.rope_scaling is None:
            return None
        rope = dict(self.rope_scaling or {})
        if self.rope_theta is not None:
            rope["rope_theta"] = self.rope_theta
        return rope


def stage_geometries(train_cfg: Any) -> list[StageGeometry]:
    """Each data stage's geometry (empty without stages); unset fields carry over from the stage before."""
    out: list[StageGeometry] = []
    seq_len, theta, scaling = train_cfg.seq_len, None, None
    for stage in train_cfg.data_stages:
        seq_len = stage.seq_len or seq_len
        theta = stage.rope_theta if stage.rope_theta is not None else theta
        scaling = stage.rope_scaling if stage.rope_scaling is not None else scaling
        micro = stage.micro_batch_size or max(1, train_cfg.micro_batch_size * train_cfg.seq_len // seq_len)
        masking = stage.document_masking
        if masking is None:
            masking = True if seq_len > train_cfg.seq_len else train_cfg.document_masking
        out.append(StageGeometry(seq_len, micro, masking, theta, scaling))
    return out

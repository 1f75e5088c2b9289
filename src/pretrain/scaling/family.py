"""A recipe's model family: the shapes of the same architecture at other sizes (`pretrain ladder`, `plan`).

A `Shape` is width, depth, heads and MLP size; a `Family` grows or shrinks the recipe's own shape along the
ratios it keeps (head size, MLP ratio, aspect ratio), so a rung or a proposed size differs from the recipe in
scale only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError

# the recipe keys a ladder rescales; every other model key is kept as the recipe sets it
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


class LadderError(PretrainError):
    """The ladder cannot be designed, run or fitted as configured; the message names the rung or key."""


@dataclass(frozen=True)
class Shape:
    """Width, depth and heads of one model of the recipe's family."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None  # None: the recipe does not set it (plain multi-head attention)
    intermediate_size: int

    def model_fields(self) -> dict:
        fields = {k: getattr(self, k) for k in SHAPE_KEYS}
        if self.num_key_value_heads is not None:
            fields["num_key_value_heads"] = self.num_key_value_heads
        return fields

    def describe(self) -> str:
        kv = f" ({self.num_key_value_heads} kv)" if self.num_key_value_heads else ""
        return (
            f"{self.num_hidden_layers} layers x {self.hidden_size} hidden, {self.num_attention_heads} heads"
            f"{kv}, mlp {self.intermediate_size}"
        )


@dataclass(frozen=True)
class Family:
    """What the recipe's model keys fix for every size: head dim, query/kv ratio, MLP ratio, aspect."""

    head_dim: int
    kv_ratio: int | None
    mlp_ratio: float
    aspect: float  # hidden / layers of the recipe's model
    max_heads: int
    max_layers: int

    @classmethod
    def of(cls, recipe: Recipe, grow: bool = False) -> Family:
        """The recipe's family; `grow`: also shapes wider and deeper than the recipe's (a bigger budget)."""
        fields = recipe.model.hf_fields
        missing = [k for k in SHAPE_KEYS if not isinstance(fields.get(k), int)]
        if missing:
            raise LadderError(
                f"{recipe.source_label}: model: the ladder rescales {', '.join(SHAPE_KEYS)}; "
                f"model_type {recipe.model.model_type} sets none of {', '.join(missing)} (use a Llama-style "
                "config, e.g. llama, qwen2, mistral)"
            )
        hidden, layers, heads = (
            fields["hidden_size"],
            fields["num_hidden_layers"],
            fields["num_attention_heads"],
        )
        kv = fields.get("num_key_value_heads")
        head_dim = fields.get("head_dim") or hidden // heads
        return cls(
            head_dim=int(head_dim),
            kv_ratio=max(1, heads // kv) if isinstance(kv, int) and kv > 0 else None,
            mlp_ratio=fields["intermediate_size"] / hidden,
            aspect=hidden / layers,
            max_heads=max(4 * heads, 32) if grow else heads,
            max_layers=max(2 * layers, 48) if grow else layers,
        )

    def shape(self, heads: int, layers: int) -> Shape:
        hidden = heads * self.head_dim
        kv = None
        if self.kv_ratio is not None:
            kv = max(1, heads // self.kv_ratio)
            while heads % kv:
                kv -= 1
        intermediate = max(8, int(round(self.mlp_ratio * hidden / 8)) * 8)
        return Shape(hidden, layers, heads, kv, intermediate)

    def approx_non_embedding(self, shape: Shape) -> float:
        """Llama-style count (q, k, v, o, gated MLP, two norms per layer); for ranking candidates only."""
        h, q = shape.hidden_size, shape.num_attention_heads * self.head_dim
        kv = (shape.num_key_value_heads or shape.num_attention_heads) * self.head_dim
        per_layer = 2 * h * q + 2 * h * kv + 3 * h * shape.intermediate_size + 2 * h
        return shape.num_hidden_layers * per_layer + h

    def closest(self, params: float, target_params: float) -> Shape:
        """The shape whose non-embedding count is nearest `params`, width/depth shrinking with size."""
        # SmolLM2 / Llama 3: width/depth grows ~N^(1/3) across sizes; keep the recipe's at the target
        aspect = self.aspect * (params / target_params) ** (1 / 3)
        best, best_score = None, math.inf
        for heads in range(1, self.max_heads + 1):
            for layers in range(1, self.max_layers + 1):
                shape = self.shape(heads, layers)
                size_error = abs(math.log(self.approx_non_embedding(shape) / params))
                score = 4 * size_error + abs(math.log(shape.hidden_size / layers / aspect))
                if score < best_score:
                    best, best_score = shape, score
        return best

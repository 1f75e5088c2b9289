"""Chinchilla compute-optimal sizing and a concrete Llama shape for a parameter budget.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), approach 1 / Table 3:
the compute-optimal number of training tokens is about 20 per parameter, and training compute is
C ≈ 6·N·D. Together: N_opt = sqrt(C / 120), D_opt = 20·N_opt. Table 3 rows (used in the tests):
400M params ↔ 8.0B tokens ↔ 1.92e19 FLOPs; 1B ↔ 20.2B ↔ 1.21e20; 10B ↔ 205.1B ↔ 1.23e22.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pretrain.core.errors import PretrainError

TOKENS_PER_PARAM = 20.0


def chinchilla_tokens(params: float) -> float:
    return TOKENS_PER_PARAM * params


def compute_optimal(flops: float) -> tuple[float, float]:
    """(params, tokens) that spend `flops` compute-optimally: C = 6·N·(20·N)."""
    n = math.sqrt(flops / (6.0 * TOKENS_PER_PARAM))
    return n, TOKENS_PER_PARAM * n


@dataclass
class Shape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool

    def as_model_fields(self) -> dict:
        return {
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "tie_word_embeddings": self.tie_word_embeddings,
        }


def _approx_params(h: int, layers: int, vocab: int, kv_ratio: int, tied: bool) -> float:
    inter = _intermediate(h)
    attn = 2 * h * h + 2 * h * (h // kv_ratio)
    return layers * (attn + 3 * h * inter + 2 * h) + vocab * h * (1 if tied else 2) + h


def _intermediate(h: int) -> int:
    return int(math.ceil(8 * h / 3 / 256) * 256)  # SwiGLU 8/3·h, rounded for tensor-core friendly sizes


def propose_shape(params: float, vocab: int = 49_152) -> Shape:
    """A Llama shape near `params`: head_dim 64, GQA 3:1 above 512 wide, depth/width like SmolLM2 / Llama 3."""
    best, best_score = None, float("inf")
    for h in range(256, 16_385, 64):
        tied = h < 2048
        heads = h // 64
        kv_ratio = 1 if h < 576 else 3 if heads % 3 == 0 else 4 if heads % 4 == 0 else 1
        per_layer = _approx_params(h, 1, 0, kv_ratio, tied) - h
        layers = round((params - vocab * h * (1 if tied else 2)) / per_layer)
        if not 4 <= layers <= 128:
            continue
        aspect = h / layers
        err = abs(_approx_params(h, layers, vocab, kv_ratio, tied) - params) / params
        # width/depth grows with size: SmolLM2-135M 576/30 = 19, SmolLM2-1.7B 2048/24 = 85, Llama-3-8B 4096/32 = 128
        target = 20 * (params / 1e8) ** 0.4
        score = err * 10 + abs(math.log(aspect / target))
        if score < best_score:
            best, best_score = (
                Shape(h, layers, heads, heads // kv_ratio, _intermediate(h), vocab, tied),
                score,
            )
    if best is None:
        raise PretrainError(f"no Llama shape found for {params:.3g} parameters (supported: ~1M to ~200B)")
    return best

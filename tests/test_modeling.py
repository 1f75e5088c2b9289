"""Random init (modeling.py): every architecture starts at its documented init, norms at their neutral gain."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from pretrain.config import load_recipe
from pretrain.modeling import build_model


class _Tokenizer:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return 512


def _model(tiny_recipe_path, tmp_path, model: str, std: float = 0.02, scaled_residual: bool = True):
    recipe = load_recipe(
        tiny_recipe_path,
        overrides=[
            f"model={model}",
            f"model.init_std={std}",
            f"model.scaled_residual_init={str(scaled_residual).lower()}",
            "train.seq_len=64",
        ],
        output_dir=str(tmp_path),
    )
    return build_model(recipe, _Tokenizer())


def _norms(model):
    return [
        m
        for m in model.modules()
        if "norm" in type(m).__name__.lower() and getattr(m, "weight", None) is not None
    ]


GEMMA = (
    "{model_type: gemma, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, "
    "num_attention_heads: 2, num_key_value_heads: 1, head_dim: 32, max_position_embeddings: 64}"
)
LLAMA = (
    "{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, "
    "num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64}"
)
GPT2 = "{model_type: gpt2, n_embd: 256, n_layer: 4, n_head: 4, n_positions: 64}"


@pytest.mark.parametrize("spec", [GEMMA, LLAMA], ids=["gemma", "llama"])
def test_norms_start_with_unit_gain(spec, tiny_recipe_path, tmp_path):
    """Gemma's norms compute x * (1 + w): w must start at 0, not 1 (else the gain doubles at init)."""
    model = _model(tiny_recipe_path, tmp_path, spec)
    norms = _norms(model)
    assert norms
    x = torch.randn(3, 64)
    rms = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    for norm in norms:
        torch.testing.assert_close(norm(x), rms, rtol=1e-3, atol=1e-3)


def test_gemma_norm_weights_are_zero(tiny_recipe_path, tmp_path):
    model = _model(tiny_recipe_path, tmp_path, GEMMA)
    assert all(torch.count_nonzero(n.weight) == 0 for n in _norms(model))


@pytest.mark.parametrize("scaled_residual", [True, False])
def test_gpt2_conv1d_projections_follow_the_documented_init(scaled_residual, tiny_recipe_path, tmp_path):
    """GPT-2's projections are Conv1D, not nn.Linear: N(0, std), residual c_proj std/sqrt(2L) only when asked."""
    std, layers = 0.05, 4
    model = _model(tiny_recipe_path, tmp_path, GPT2, std=std, scaled_residual=scaled_residual)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, Conv1D)}
    assert len(convs) == 4 * layers
    for name, conv in convs.items():
        scaled = scaled_residual and name.endswith("c_proj")
        expected = std / math.sqrt(2 * layers) if scaled else std
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05), name
        assert torch.count_nonzero(conv.bias) == 0, name

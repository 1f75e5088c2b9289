"""Random init (modeling.py): every architecture starts at its documented init, norms at their neutral gain."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from pretrain.config import load_recipe
from pretrain.modeling import build_model, muon_parameter_count
from pretrain.modeling.attention import attn_implementation
from pretrain.train.optim import muon_parameters


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


QWEN3 = (
    "{model_type: qwen3, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, "
    "num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 64, tie_word_embeddings: %s}"
)
OLMO2 = (
    "{model_type: olmo2, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, "
    "num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: %s}"
)


@pytest.mark.parametrize("spec", [QWEN3, OLMO2], ids=["qwen3", "olmo2"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_qk_norm_architectures_start_at_the_documented_init(spec, tied, tiny_recipe_path, tmp_path):
    """QK-norm models (Qwen3, OLMo 2): q_norm / k_norm at unit gain, projections N(0, std), residual outputs
    std / sqrt(2L), and the head tied to the embedding (one parameter) or its own N(0, std) matrix."""
    std, layers = 0.05, 2
    model = _model(tiny_recipe_path, tmp_path, spec % str(tied).lower(), std=std)
    qk = [m for name, m in model.named_modules() if name.endswith(("q_norm", "k_norm"))]
    assert len(qk) == 2 * layers
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in qk)
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in _norms(model))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            expected = std / math.sqrt(2 * layers) if name.endswith(("o_proj", "down_proj")) else std
            assert module.weight.std().item() == pytest.approx(expected, rel=0.1), name
    head, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert (head is emb) == tied
    assert head.std().item() == pytest.approx(std, rel=0.05)
    assert sum(p.numel() for p in model.parameters()) == (
        sum(p.numel() for n, p in model.named_parameters() if n != "lm_head.weight")
        + (0 if tied else head.numel())
    )


def test_muon_parameter_count_is_the_hidden_matrices(tiny_recipe_path, tmp_path):
    model = _model(tiny_recipe_path, tmp_path, LLAMA)
    hidden, layers, mlp = 64, 2, 128  # LLAMA: q, k, v, o (2 heads, 2 kv heads) and gate, up, down per layer
    assert muon_parameter_count(model.config) == layers * (4 * hidden * hidden + 3 * hidden * mlp)
    assert muon_parameter_count(model.config) == sum(p.numel() for p in muon_parameters(model))


@pytest.mark.parametrize(("key", "value"), [("hidden_size", 10**12), ("num_hidden_layers", 10**9)])
def test_a_size_beyond_any_model_is_one_error(key, value):
    """`pretrain plan` with hidden_size 1e12 was a torch overflow traceback (and 1e9 layers would never end)."""
    from transformers import AutoConfig

    from pretrain.core.errors import PretrainError
    from pretrain.modeling import count_parameters

    config = AutoConfig.for_model("llama", hidden_size=64, num_attention_heads=2, num_hidden_layers=2)
    setattr(config, key, value)
    with pytest.raises(PretrainError, match=f"model.{key}: {value} is beyond any model this can build"):
        count_parameters(config)


@pytest.mark.parametrize(
    ("asked", "cuda", "built"),
    [
        ("flash_attention_2", False, "sdpa"),
        ("flash_attention_2", True, "flash_attention_2"),
        ("eager", False, "eager"),
    ],
)
def test_flash_attention_falls_back_to_sdpa_only_without_cuda(
    tiny_recipe_path, monkeypatch, asked, cuda, built
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    recipe = load_recipe(tiny_recipe_path, overrides=[f"model.attn_implementation={asked}"])
    assert attn_implementation(recipe) == built

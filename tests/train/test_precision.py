"""train/precision.py: the precision training runs in, decided for the device, and the bf16 cast."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from pretrain.config import load_recipe
from pretrain.train import precision
from pretrain.train.precision import cast_parameters_to_bf16


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return AutoModelForCausalLM.from_config(config)


def test_bf16_true_keeps_floating_buffers_in_fp32_so_a_reload_gives_the_same_logits(tmp_path):
    """RoPE's inv_freq is not saved: rounded to bf16 in training, the reloaded model (fp32 inv_freq) differs."""
    model = _model()
    cast_parameters_to_bf16(model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    buffers = {n: b.dtype for n, b in model.named_buffers() if b.is_floating_point()}
    assert buffers and set(buffers.values()) == {torch.float32}, buffers
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    ids = torch.arange(500).remainder(64)[None]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reloaded(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("native", [True, False], ids=["avx512-bf16", "no-native-bf16"])
def test_bf16_if_native_decides_by_the_cpu(native, tiny_recipe_path, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    recipe = load_recipe(
        tiny_recipe_path, overrides=["train.precision=bf16-mixed-if-native"], output_dir=str(tmp_path)
    )
    assert precision.native_bf16() is native
    assert precision.precision_that_runs(recipe) == ("bf16-mixed" if native else "fp32")
    assert precision.mixed_precision(recipe) == ("bf16" if native else "no")

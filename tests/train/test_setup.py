"""train/setup.py: what the loop is built from (precision casts here; the full build runs in test_training.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from pretrain.core.errors import PretrainError
from pretrain.testing import run_train_stage
from pretrain.train import setup
from pretrain.train.setup import cast_parameters_to_bf16


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


def test_missing_tracker_is_an_error_before_training(fresh_run, monkeypatch):
    """accelerate drops a tracker whose package is missing with a warning; we refuse before any work."""
    monkeypatch.setitem(setup.TRACKER_MODULES, "wandb", "no_such_tracker_package")
    recipe, out = fresh_run("no_tracker", "train.trackers=[wandb]", "eval.enabled=false")
    with pytest.raises(
        PretrainError, match=r"train.trackers: wandb requested but not installed; `pip install"
    ):
        run_train_stage(recipe)
    assert not recipe.layout.checkpoints.exists()


def test_tensorboard_gets_the_resolved_recipe_in_the_run_folder(fresh_run):
    recipe, out = fresh_run("tb", "train.trackers=[tensorboard]", "eval.enabled=false", "train.tokens=2048")
    run_train_stage(recipe)
    events = list(recipe.layout.trackers.rglob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in out.iterdir())
    flat = setup.flat_recipe(recipe)
    assert flat["train.optimizer.lr"] == recipe.train.optimizer.lr and flat["name"] == recipe.name
    assert all(isinstance(v, str | int | float | bool) for v in flat.values())


@pytest.mark.parametrize("native", [True, False], ids=["avx512-bf16", "no-native-bf16"])
def test_bf16_if_native_decides_by_the_cpu(native, tiny_recipe_path, tmp_path, monkeypatch):
    from pretrain.config import load_recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    recipe = load_recipe(
        tiny_recipe_path, overrides=["train.precision=bf16-mixed-if-native"], output_dir=str(tmp_path)
    )
    assert setup.native_bf16() is native
    assert setup.precision_that_runs(recipe) == ("bf16-mixed" if native else "fp32")
    assert setup.mixed_precision(recipe) == ("bf16" if native else "no")

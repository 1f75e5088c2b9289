"""Mixture-of-experts configs: routing read from any MoE config, and the active parameters (what FLOPs and MFU
count) equal to a hand count of the tiny-moe shape."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from pretrain.config import load_recipe
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.scaling.flops import flops_per_token
from pretrain.scaling.moe import MoESpec, active_non_embedding, moe_spec
from pretrain.scaling.plan import plan_recipe

SMALL = dict(
    hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
)


@pytest.mark.parametrize(
    ("model_type", "fields", "spec"),
    [
        ("qwen3_moe", {"num_experts": 8, "head_dim": 32}, MoESpec(8, 2, 0.001, 0.0)),
        ("olmoe", {"num_experts": 8}, MoESpec(8, 2, 0.01, 0.0)),
        ("mixtral", {"num_local_experts": 4}, MoESpec(4, 2, 0.001, 0.0)),
    ],
)
def test_routing_is_read_from_every_moe_config(model_type, fields, spec):
    config = AutoConfig.for_model(model_type, **SMALL, **fields, num_experts_per_tok=2)
    assert moe_spec(config) == spec


def test_a_dense_model_has_no_moe_and_all_its_parameters_are_active():
    config = AutoConfig.for_model("llama", **SMALL, vocab_size=100)
    assert moe_spec(config) is None
    assert active_non_embedding(config) == count_parameters(config)[1]


def test_tiny_moe_active_parameters_match_a_hand_count(repo_root):
    recipe = load_recipe(repo_root / "recipes" / "tiny-moe" / "config.yaml")
    config = build_hf_config(recipe, vocab_size=4096)
    h, heads, hd, layers, experts, k, inter = 128, 4, 32, 4, 8, 2, 192
    attention = 4 * h * heads * hd + 2 * hd  # q, k, v, o projections + q_norm, k_norm
    per_layer_dense = attention + 2 * h + experts * h  # + two norms + the router
    expert = 3 * h * inter  # gate, up, down of one expert
    total_non_emb = layers * (per_layer_dense + experts * expert) + h  # + the final norm
    active = layers * (per_layer_dense + k * expert) + h
    assert count_parameters(config) == (total_non_emb + 4096 * h, total_non_emb)
    assert active_non_embedding(config) == active == 857_472
    plan = plan_recipe(recipe)
    assert plan["active_non_embedding_params"] == active and plan["params"] == total_non_emb + 4096 * h
    # FLOPs per token (and so MFU) count the active parameters; memory counts them all
    assert plan["flops_per_token"] == flops_per_token(config, active, 256)
    assert plan["flops_per_token"] < flops_per_token(config, total_non_emb, 256)

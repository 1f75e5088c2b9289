"""On one process parallelising leaves the model as it is (compile per block aside); the loss-parallel context
and the gradient-sync switch are no-ops; the blocks are found from transformers' `_no_split_modules`; the tensor
and expert plans are the model's own; a built model's experts are checked against the ep size."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from pretrain.config.expert_checks import check_built_experts
from pretrain.config.parallelism import MeshError, MeshShape
from pretrain.train.parallel.mesh import Parallelism
from pretrain.train.parallel.parallelize import (
    decoder_blocks,
    expert_modules,
    expert_plan,
    local_value,
    loss_context,
    no_gradient_sync,
    parallelize,
    tensor_plan,
)


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2
    )
    return LlamaForCausalLM(config)


def test_decoder_blocks_are_the_layers():
    model = _model()
    assert decoder_blocks(model) == list(model.model.layers)


def test_one_process_parallelize_changes_nothing_but_compiles_blocks_when_asked():
    model, reference = _model(), _model()
    par = Parallelism(MeshShape())
    assert parallelize(model, par) is model
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values())
    )
    assert all(block._compiled_call_impl is None for block in decoder_blocks(model))
    parallelize(model, par, compile_blocks=True)
    assert all(block._compiled_call_impl is not None for block in decoder_blocks(model))
    assert model._compiled_call_impl is None  # per block, as torchtitan: not the whole model


def test_contexts_are_no_ops_on_one_process():
    model, par = _model(), Parallelism(MeshShape())
    x = torch.randint(0, 64, (2, 8))
    with no_gradient_sync(model, par), loss_context(par), loss_context(None):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
    assert local_value(loss) is loss


def test_the_tensor_plan_is_the_models_own_with_layers_expanded():
    plan = tensor_plan(_model(), 2)
    assert plan["model.layers.2.self_attn.q_proj"] == "colwise"
    assert plan["model.layers.0.mlp.down_proj"] == "rowwise"
    assert not any("*" in name for name in plan)


def _moe(num_experts: int = 4):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=64,
        hidden_size=32,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=num_experts,
        num_experts_per_tok=2,
    )
    return AutoModelForCausalLM.from_config(config)


def test_the_expert_plan_is_the_models_own_with_layers_expanded():
    model = _moe()
    plan = expert_plan(model, 2, 2)
    assert plan["model.layers.1.mlp.experts.gate_up_proj"] == "grouped_gemm"
    assert plan["model.layers.0.mlp.experts"] == "ep_dispatch_experts"
    assert expert_modules(model, plan) == [layer.mlp.experts for layer in model.model.layers]


def test_the_built_models_experts_are_checked_against_ep_before_any_weight_is_cut():
    """A parent model (model.init_from) brings its own config: its experts are checked at launch too."""
    check_built_experts(_moe(4).config, MeshShape(dp_shard=4, ep=4), "r.yaml")
    check_built_experts(_moe(3).config, MeshShape(dp_shard=2), "r.yaml")  # no ep: nothing to check
    with pytest.raises(
        MeshError, match=r"^r.yaml: model.num_experts: 3 experts do not divide across .*ep_size 2"
    ):
        check_built_experts(_moe(3).config, MeshShape(dp_shard=2, ep=2), "r.yaml")
    with pytest.raises(MeshError, match="llama has no routed experts"):
        check_built_experts(_model().config, MeshShape(dp_shard=2, ep=2), "r.yaml")

"""The mesh a launch asks for: accelerate's parallelism_config (exported or in the file), an FSDP launch, or
replicas; and the problems named before any process starts (sizes, tensor-parallel divisibility, no TP plan, CP)."""

from __future__ import annotations

import re

import pytest

from pretrain.config.expert_checks import EP_RULE, EP_UNDER_TP, has_expert_parallel_plan
from pretrain.config.parallelism import (
    CP_UNSUPPORTED,
    MeshError,
    MeshShape,
    launch_problems,
    model_problems,
    shape_for_launch,
    shape_from_settings,
)

SECTION = {
    "parallelism_config": {
        "parallelism_config_dp_replicate_size": 1,
        "parallelism_config_dp_shard_size": 2,
        "parallelism_config_tp_size": 2,
        "parallelism_config_cp_size": 1,
    }
}
EXPORTED = {  # what `accelerate launch --config_file <a file with that section>` puts in every process
    "ACCELERATE_USE_PARALLELISM_CONFIG": "true",
    "PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "2",
    "PARALLELISM_CONFIG_DP_SHARD_SIZE": "2",
    "PARALLELISM_CONFIG_TP_SIZE": "1",
    "PARALLELISM_CONFIG_CP_SIZE": "1",
}
LLAMA = {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64, "intermediate_size": 128}


def test_exported_sizes_win_over_the_recipes_file():
    shape = shape_for_launch(4, SECTION, EXPORTED)
    assert (shape.dp_replicate, shape.dp_shard, shape.tp) == (2, 2, 1)
    assert shape.dp == 4 and shape.sharded and "PARALLELISM_CONFIG" in shape.source


def test_the_files_section_applies_when_the_launch_dropped_it():
    """`accelerate launch --multi_gpu` exports nothing from the file: its section still counts, for that world."""
    shape = shape_for_launch(4, SECTION, {})
    assert (shape.dp_replicate, shape.dp_shard, shape.tp, shape.dp) == (1, 2, 2, 2)
    # on another world size the file is for another launch (a resume elsewhere): replicas
    assert shape_for_launch(2, SECTION, {}) == MeshShape(dp_replicate=2, source="accelerate launch")
    assert shape_for_launch(1, SECTION, {}).world == 1


def test_an_fsdp_launch_shards_over_every_process_with_its_reshard_setting():
    env = {"ACCELERATE_USE_FSDP": "true", "FSDP_RESHARD_AFTER_FORWARD": "false"}
    shape = shape_for_launch(8, None, env)
    assert (shape.dp_shard, shape.dp_replicate, shape.reshard_after_forward) == (8, 1, False)
    assert shape_for_launch(8, None, {}).dp_replicate == 8  # no FSDP, no sizes: DDP


def test_sizes_that_do_not_multiply_to_the_world_are_one_clear_error():
    with pytest.raises(MeshError, match=r"dp_shard 2 x tp 1 x cp 1 = 4 processes, but the launch has 8"):
        shape_for_launch(8, None, EXPORTED)
    with pytest.raises(MeshError, match="context parallelism is not supported"):
        shape_for_launch(
            4,
            None,
            {**EXPORTED, "PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "1", "PARALLELISM_CONFIG_CP_SIZE": "2"},
        )
    with pytest.raises(MeshError, match="PARALLELISM_CONFIG_TP_SIZE: expected a whole number"):
        shape_for_launch(4, None, {**EXPORTED, "PARALLELISM_CONFIG_TP_SIZE": "two"})


def test_settings_give_fsdp_or_replicas_without_a_section():
    fsdp = {
        "distributed_type": "FSDP",
        "num_processes": 8,
        "fsdp_config": {"fsdp_reshard_after_forward": False},
    }
    assert shape_from_settings(fsdp) == MeshShape(
        dp_shard=8, reshard_after_forward=False, source="accelerate_config"
    )
    assert shape_from_settings({"distributed_type": "MULTI_GPU", "num_processes": 4}).dp_replicate == 4
    assert shape_from_settings(None).world == 1


def test_tensor_parallel_must_divide_heads_kv_heads_hidden_and_mlp():
    shape = MeshShape(tp=4, source="cfg.yaml: parallelism_config")
    problems = model_problems(shape, LLAMA, True, "llama")
    assert problems == [
        "model.num_key_value_heads: 2 is not divisible by tp_size 4 (cfg.yaml: parallelism_config); each "
        "tensor-parallel rank takes an equal slice of it: pick a tp_size that divides it"
    ]
    assert model_problems(MeshShape(tp=2), LLAMA, True, "llama") == []
    assert model_problems(MeshShape(dp_shard=3), {"num_attention_heads": 5}, False, "gpt2") == []  # no TP


def test_a_model_without_a_tensor_parallel_plan_is_named():
    (problem,) = model_problems(MeshShape(tp=2), {}, False, "gpt2")
    assert problem.startswith("model.model_type: gpt2 has no tensor-parallel plan in transformers")


def test_launch_problems_read_the_file_and_the_model():
    settings = {**SECTION, "num_processes": 8}
    shape, problems = launch_problems(settings, "accelerate_config a.yaml", "llama", LLAMA)
    assert shape.tp == 2
    assert problems == [
        "accelerate_config a.yaml: parallelism_config: the mesh dp_replicate 1 x dp_shard 2 x tp 2 x cp 1 = 4 "
        "processes, but the launch has 8 processes; make the sizes multiply to the number of processes "
        "(accelerate launch --num_processes 4)"
    ]
    _, problems = launch_problems({**settings, "num_processes": 4}, "a.yaml", "gpt2", {})
    assert problems and "gpt2 has no tensor-parallel plan" in problems[0]
    cp = {"parallelism_config": {"parallelism_config_cp_size": 2}, "num_processes": 2}
    assert launch_problems(cp, "a.yaml", "llama", LLAMA)[1] == [
        f"a.yaml: parallelism_config: parallelism_config_cp_size: {CP_UNSUPPORTED}"
    ]


# ------------------------------------------------------------------------------------------ expert parallelism
MOE = {"num_experts": 8, "num_experts_per_tok": 2, "hidden_size": 64, "num_attention_heads": 4}


def _ep_section(dp_shard: int, ep: int, tp: int = 1, processes: int | None = None) -> dict:
    sizes = {
        "parallelism_config_dp_shard_size": dp_shard,
        "parallelism_config_tp_size": tp,
        "parallelism_config_ep_size": ep,
    }
    return {"parallelism_config": sizes, "num_processes": processes or dp_shard * tp}


def test_the_ep_size_is_read_from_the_file_and_the_environment_and_splits_dp_shard():
    shape = shape_for_launch(4, _ep_section(4, 2), {})
    assert (shape.dp_shard, shape.ep, shape.expert_shard, shape.world) == (4, 2, 2, 4)
    assert "experts over ep 2" in shape.describe() and shape.sizes()["ep"] == 2
    assert MeshShape().sizes() == {"dp_replicate": 1, "dp_shard": 1, "tp": 1, "cp": 1}  # none recorded at 1
    # accelerate exports only its own keys: under `accelerate launch` the file's ep (for this launch) still counts
    exported = {
        **EXPORTED,
        "PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "1",
        "PARALLELISM_CONFIG_DP_SHARD_SIZE": "4",
    }
    assert shape_for_launch(4, _ep_section(4, 2), exported).ep == 2
    assert shape_for_launch(4, _ep_section(4, 2), {**exported, "PARALLELISM_CONFIG_EP_SIZE": "4"}).ep == 4
    assert shape_for_launch(4, None, exported).ep == 1
    # a file asking for another mesh was not the file launched: its ep is not this launch's
    other = _ep_section(2, 2, tp=2)
    assert shape_for_launch(4, other, exported).ep == 1
    with pytest.raises(MeshError, match="PARALLELISM_CONFIG_EP_SIZE: expected a whole number"):
        shape_for_launch(4, None, {**exported, "PARALLELISM_CONFIG_EP_SIZE": "two"})


def test_an_ep_size_that_does_not_divide_dp_shard_is_one_clear_error_before_training():
    with pytest.raises(MeshError) as info:
        shape_for_launch(6, _ep_section(6, 4), {})
    assert str(info.value) == (
        "accelerate_config: parallelism_config: parallelism_config_ep_size 4 does not divide "
        f"parallelism_config_dp_shard_size 6: {EP_RULE}; pick an ep_size that divides it (or 1)"
    )
    with pytest.raises(MeshError, match=re.escape(f"parallelism_config_ep_size 2: {EP_UNDER_TP}")):
        shape_for_launch(4, _ep_section(2, 2, tp=2), {})
    _, problems = launch_problems(_ep_section(6, 4), "a.yaml", "qwen3_moe", MOE)
    assert problems == [
        "a.yaml: parallelism_config: parallelism_config_ep_size 4 does not divide parallelism_config_dp_shard_size "
        f"6: {EP_RULE}; pick an ep_size that divides it (or 1)"
    ]


def test_experts_that_do_not_divide_across_the_ep_ranks_are_named_with_their_key():
    (problem,) = model_problems(MeshShape(dp_shard=6, ep=3, source="a.yaml"), MOE, True, "qwen3_moe")
    assert problem == (
        "model.num_experts: 8 experts do not divide across parallelism_config_ep_size 3 (a.yaml); each "
        "expert-parallel rank holds an equal share of every layer's experts: pick an ep_size that divides 8 "
        "(and parallelism_config_dp_shard_size), or change num_experts"
    )
    mixtral = {"num_local_experts": 6, "num_experts_per_tok": 2}
    (problem,) = model_problems(MeshShape(dp_shard=4, ep=4), mixtral, True, "mixtral")
    assert problem.startswith(
        "model.num_local_experts: 6 experts do not divide across parallelism_config_ep_size 4"
    )
    assert model_problems(MeshShape(dp_shard=4, ep=4), MOE, True, "qwen3_moe") == []
    assert (
        model_problems(MeshShape(dp_shard=4), {"num_experts": 3}, True, "qwen3_moe") == []
    )  # no ep: no check


def test_ep_on_a_model_without_experts_or_without_an_expert_plan_is_refused():
    (dense,) = model_problems(MeshShape(dp_shard=2, ep=2), LLAMA, True, "llama")
    assert dense.startswith("model.model_type: llama has no routed experts") and "set it to 1" in dense
    (no_plan,) = model_problems(MeshShape(dp_shard=2, ep=2), MOE, True, "qwen2_moe", has_ep_plan=False)
    assert no_plan.startswith("model.model_type: qwen2_moe has no expert-parallel plan in transformers")
    _, problems = launch_problems(_ep_section(2, 2), "a.yaml", "llama", LLAMA)
    assert len(problems) == 1 and "llama has no routed experts" in problems[0]
    assert has_expert_parallel_plan("qwen3_moe") and has_expert_parallel_plan("mixtral")
    assert has_expert_parallel_plan("olmoe") and not has_expert_parallel_plan("llama")
    assert launch_problems(_ep_section(2, 2), "a.yaml", "qwen3_moe", MOE) == (
        MeshShape(dp_shard=2, ep=2, source="a.yaml: parallelism_config"),
        [],
    )

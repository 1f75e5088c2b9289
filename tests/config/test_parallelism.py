"""The mesh a launch asks for: accelerate's parallelism_config (exported or in the file), an FSDP launch, or
replicas; and the problems named before any process starts (sizes, tensor-parallel divisibility, no TP plan, CP)."""

from __future__ import annotations

import pytest

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

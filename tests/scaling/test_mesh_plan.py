"""`pretrain plan --gpus N`: the mesh proposed is FSDP over every GPU when it fits, tensor parallel when memory or
the global batch demands it, never a TP size that does not divide the model; the launch mesh is the recipe's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pretrain.cli import main
from pretrain.scaling.mesh_plan import launch_mesh, propose_mesh

LLAMA_8B = SimpleNamespace(
    num_hidden_layers=32,
    hidden_size=4096,
    intermediate_size=14336,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
)


def _recipe(seq_len=8192, micro_batch=2, global_tokens=4_194_304, checkpointing=False):
    train = SimpleNamespace(seq_len=seq_len, micro_batch_size=micro_batch, global_batch_tokens=global_tokens)
    return SimpleNamespace(train=train, model=SimpleNamespace(gradient_checkpointing=checkpointing))


def test_eight_billion_on_64_h100_needs_tp_2_for_its_activations():
    proposal = propose_mesh(_recipe(), LLAMA_8B, 8_030_261_248, "bf16-mixed", 64, 80)
    row = proposal["proposed"]
    assert (
        row["mesh"] == {"dp_replicate": 1, "dp_shard": 32, "tp": 2, "cp": 1} and row["strategy"] == "fsdp+tp"
    )
    assert row["memory_per_device"]["total_gb"] < 0.9 * 80 and row["grad_accum"] == 8
    (passed,) = proposal["tried"]
    assert passed["tp"] == 1 and passed["memory_per_device"]["total_gb"] > 0.9 * 80
    assert "parallelism_config_tp_size: 2" in proposal["accelerate"]
    assert "num_processes: 64" in proposal["accelerate"]


def test_fsdp_alone_when_it_fits():
    small = propose_mesh(_recipe(seq_len=2048), LLAMA_8B, 8_030_261_248, "bf16-mixed", 64, 80)
    assert small["proposed"]["mesh"]["tp"] == 1 and small["proposed"]["strategy"] == "fsdp"
    assert small["tried"] == []


def test_more_ranks_than_the_batch_has_sequences_for_take_tp():
    # 64 sequences of micro batch 2: 32 data ranks at most, so 64 GPUs need TP 2 even though FSDP 64 fits
    recipe = _recipe(seq_len=2048, global_tokens=64 * 2048)
    proposal = propose_mesh(recipe, LLAMA_8B, 8_030_261_248, "bf16-mixed", 64, 80)
    assert proposal["proposed"]["mesh"]["tp"] == 2
    assert "do not divide the global batch" in proposal["tried"][0]["why"]


def test_a_tp_size_that_does_not_divide_the_heads_is_passed_over_and_nothing_fits_says_so():
    odd = SimpleNamespace(**{**vars(LLAMA_8B), "num_attention_heads": 6, "num_key_value_heads": 2})
    proposal = propose_mesh(_recipe(seq_len=65536), odd, 8_030_261_248, "bf16-mixed", 8, 80)
    assert proposal["proposed"] is None and proposal["accelerate"] is None
    why = {row["tp"]: row["why"] for row in proposal["tried"]}
    assert "does not divide num_attention_heads, num_key_value_heads" in why[4]
    assert "GiB per device" in why[2]


def _with_accelerate(settings):
    return SimpleNamespace(accelerate_settings=lambda: settings, accelerate_config="acc.yaml")


def test_launch_mesh_is_the_recipes_accelerate_config():
    assert launch_mesh(_with_accelerate(None)).world == 1
    fsdp_tp = {"num_processes": 8, "parallelism_config": {"parallelism_config_dp_shard_size": 4}}
    fsdp_tp["parallelism_config"]["parallelism_config_tp_size"] = 2
    mesh = launch_mesh(_with_accelerate(fsdp_tp))
    assert (mesh.dp_replicate, mesh.dp_shard, mesh.tp, mesh.world) == (1, 4, 2, 8)


def test_plan_gpus_through_the_cli(repo_root, capsys):
    recipe = str(repo_root / "recipes" / "llama-3.1-8b" / "config.yaml")
    assert main(["plan", recipe, "--gpus", "64", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["mesh_proposal"]["proposed"]["mesh"]["tp"] == 2
    assert plan["launch"]["strategy"] == "fsdp+tp" and plan["launch"]["grad_accum"] == 8
    with pytest.raises(SystemExit) as exited:  # range-checked by argparse: exit 2 with one usage line
        main(["plan", recipe, "--gpus", "0"])
    assert exited.value.code == 2
    assert "argument --gpus: 0 is not >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("gpus", [3])
def test_a_gpu_count_tp_does_not_divide_gets_fsdp_only(gpus):
    proposal = propose_mesh(
        _recipe(seq_len=2048, global_tokens=2048 * 6), LLAMA_8B, 1e9, "bf16-mixed", gpus, 80
    )
    assert proposal["proposed"]["mesh"] == {"dp_replicate": 1, "dp_shard": 3, "tp": 1, "cp": 1}

"""Every mesh trains like one process: `pretrain train` under `accelerate launch` on CPU ranks (gloo), the mesh
from accelerate's own `parallelism_config` in the launch config file (what a GPU user writes), against the
1-process run of the same recipe: per-step losses within 1e-4 relative over 12 fp32 steps.

Each launch gives the ranks the same global batch per optimizer step (the loader splits it over the
data-parallel ranks; tensor-parallel peers read the same slice), so the runs differ only by reduction order.
The gradient is clipped (train.grad_clip 1.0) on the steps whose norm exceeds it, through the norm taken over
parameters on different meshes. 2 x 2 FSDP x TP (FSDP2, transformers' TP plan, loss parallel, mixed-mesh
clipping) is the default suite's representative; the other shapes are `slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from pretrain.testing import write_recipe_file
from pretrain.train.faults import DIE_EXIT_CODE
from pretrain.train.metrics import read_records, step_losses, step_records, validation_records

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# micro batch 2: every mesh below has at most 4 data-parallel ranks for the 8 windows of a 512-token step
COMMON = (
    "eval.enabled=false",
    "train.optimizer.name=adamw",
    "train.micro_batch_size=2",
    "train.tokens=6144",
)  # 12 steps


def accelerate_config(folder: Path, dp_replicate: int, dp_shard: int, tp: int, ep: int = 1) -> Path:
    """An accelerate launch config with a `parallelism_config:` section, as `accelerate config` writes it (with
    the project's own `parallelism_config_ep_size` when `ep` > 1)."""
    path = folder / f"mesh-{dp_replicate}x{dp_shard}x{tp}{f'-ep{ep}' if ep > 1 else ''}.yaml"
    settings = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",  # torchrun's processes; the loop asks accelerate for the CPU (gloo)
        "num_machines": 1,
        "num_processes": dp_replicate * dp_shard * tp,
        "machine_rank": 0,
        "mixed_precision": "no",
        "use_cpu": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "parallelism_config": {
            "parallelism_config_dp_replicate_size": dp_replicate,
            "parallelism_config_dp_shard_size": dp_shard,
            "parallelism_config_tp_size": tp,
            "parallelism_config_cp_size": 1,
        },
    }
    if ep > 1:
        settings["parallelism_config"]["parallelism_config_ep_size"] = ep
    path.write_text(yaml.safe_dump(settings))
    return path


def train(
    recipe, folder: Path, config: Path | None, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`pretrain train` on one process (no config) or under `accelerate launch --config_file config`, with
    `env` added to the environment."""
    recipe_file = write_recipe_file(recipe, folder / f"{recipe.out.name}.yaml")
    launcher = [sys.executable]
    if config is not None:
        launcher += ["-m", "accelerate.commands.launch", "--config_file", str(config)]
    cmd = [*launcher, "-m", "pretrain", "train", str(recipe_file), "--output-dir", str(recipe.out)]
    cmd += ["--no-relaunch", *extra]
    return subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def one_process(make_run, tmp_path_factory):
    """The 1-process run every mesh is compared with: ([(step, loss), ...], [val loss, ...])."""
    folder = tmp_path_factory.mktemp("one_process")
    recipe = make_run(folder / "single", *COMMON)
    proc = train(recipe, folder, None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return step_losses(recipe.out / "metrics.jsonl"), _val_losses(recipe.out)


def _val_losses(out: Path) -> list[float]:
    return [r["val/loss"] for r in validation_records(read_records(out / "metrics.jsonl"))]


def _matches_one_process(one_process, make_run, tmp_path, sizes: tuple[int, int, int]) -> None:
    recipe = make_run(tmp_path / "mesh", *COMMON)
    proc = train(recipe, tmp_path, accelerate_config(tmp_path, *sizes))
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = step_losses(recipe.out / "metrics.jsonl")
    reference, reference_val = one_process
    assert [s for s, _ in got] == [s for s, _ in reference] == list(range(1, 13))
    worst = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(reference, got))
    print(f"\nmesh {sizes}: max relative loss difference {worst:.2e} over {len(got)} steps")
    print(f"one process: {' '.join(f'{a:.6f}' for _, a in reference)}")  # side by side with -s
    print(f"mesh {sizes}: {' '.join(f'{b:.6f}' for _, b in got)}")
    assert [b for _, b in got] == pytest.approx([a for _, a in reference], rel=1e-4)
    # the last checkpoint, written in the background while training went on, holds exactly final/'s weights
    with safe_open(recipe.out / "checkpoints" / "step-0000012" / "model.safetensors", "pt") as ckpt_file:
        with safe_open(recipe.out / "final" / "model.safetensors", "pt") as final_file:
            assert set(ckpt_file.keys()) == set(final_file.keys())
            assert all(
                torch.equal(ckpt_file.get_tensor(k), final_file.get_tensor(k)) for k in final_file.keys()
            )
    data_parallel = sizes[0] * sizes[1]
    if recipe.train.validation.batches % data_parallel == 0:  # the ranks split one process's val batches
        assert _val_losses(recipe.out) == pytest.approx(reference_val, rel=1e-4)


def test_four_ranks_fsdp_by_tensor_parallel_match_one_process(one_process, make_run, tmp_path):
    _matches_one_process(one_process, make_run, tmp_path, (1, 2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(1, 2, 1), (1, 1, 2), (2, 2, 1)], ids=["fsdp2", "tp2", "hsdp2x2"])
def test_each_mesh_matches_one_process(one_process, make_run, tmp_path, sizes):
    _matches_one_process(one_process, make_run, tmp_path, sizes)


@pytest.mark.slow
def test_four_then_two_then_one_then_four_ranks_resume_like_one_uninterrupted_run(
    one_process, make_run, tmp_path
):
    """FSDP 2 x TP 2 dies after its step-3 checkpoint, FSDP 2 resumes and dies after step 6, one process resumes
    and dies after step 9, HSDP 2 x 2 finishes: every step's loss is the uninterrupted run's, and every checkpoint's
    data position is exactly its step's (no window read twice, none skipped)."""
    recipe = make_run(
        tmp_path / "chain", *COMMON, "train.checkpoint.every_steps=3", "train.checkpoint.async_save=false"
    )
    hops = [((1, 2, 2), 5), ((1, 2, 1), 8), ((1, 1, 1), 11), ((2, 2, 1), None)]
    for i, (sizes, die_at) in enumerate(hops):
        config = accelerate_config(tmp_path, *sizes) if sizes != (1, 1, 1) else None
        extra = ["--set", f"train.fault_injection.die_at={die_at}"] if die_at else []
        proc = train(recipe, tmp_path, config, *extra)
        if die_at is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:  # one process exits with the fault's code; a launcher reports its failed ranks with 1
            assert proc.returncode == (DIE_EXIT_CODE if config is None else 1), proc.stderr[-3000:]
        if i:  # resumed from the previous hop's last checkpoint, on another mesh
            assert (
                f"resumed from {recipe.out / 'checkpoints' / f'step-{hops[i - 1][1] - 2:07d}'}" in proc.stderr
            )
    got = step_losses(recipe.out / "metrics.jsonl")
    reference, _ = one_process
    worst = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(reference, got))
    print(f"\nresume chain 4 -> 2 -> 1 -> 4: max relative loss difference {worst:.2e} over {len(got)} steps")
    print(f"chain: {' '.join(f'{b:.6f}' for _, b in got)}")
    assert [s for s, _ in got] == list(range(1, 13))
    assert [b for _, b in got] == pytest.approx([a for _, a in reference], rel=1e-4)
    windows = recipe.train.global_batch_tokens // recipe.train.seq_len
    for folder in sorted((recipe.out / "checkpoints").glob("step-*")):
        step = int(folder.name.removeprefix("step-"))
        loader = json.loads((folder / "trainer_state" / "rank-00000.json").read_text())["loader"]
        assert (loader["epoch"], loader["position"]) == (0, step * windows), folder.name


# expert parallelism:
# Expert parallelism trains like one process: a tiny Qwen3-MoE (hidden 64, 2 layers, 4 experts top-2, seq 64)
# under `accelerate launch` on CPU ranks (gloo) with `parallelism_config_ep_size` in the launch config file, its
# experts split over the ep ranks and reached by all-to-all, against the 1-process run of the same recipe:
# per-step losses and objectives (cross-entropy + the router's aux loss) within 1e-4 relative over 8 fp32 AdamW
# steps, and the exported final model (full expert weights, loaded by `from_pretrained` on one process) equal to
# the 1-process final within tolerance.
#
# FSDP 2 x EP 2 (every expert on exactly one rank: its gradient sums both ranks' tokens through the all-to-all) is the
# default suite's; FSDP 4 x EP 2 (two FSDP-sharded copies of each expert split: the copies' gradients summed by FSDP's
# reduction) is `slow`.
MOE = (
    "eval.enabled=false",
    "train.optimizer.name=adamw",
    "train.micro_batch_size=2",
    "train.tokens=4096",  # 8 steps of 512 tokens
    "train.checkpoint.every_steps=4",
    "model.model_type=qwen3_moe",
    "model.head_dim=32",
    "model.num_experts=4",
    "model.num_experts_per_tok=2",
    "model.moe_intermediate_size=64",
    "model.router_aux_loss_coef=0.01",
)
MOE_STEPS = 8


def _moe_steps(out) -> list[dict]:
    return step_records(read_records(out / "metrics.jsonl"))


@pytest.fixture(scope="module")
def moe_one_process(make_run, tmp_path_factory):
    """The 1-process MoE run every expert-parallel mesh is compared with: its output folder."""
    folder = tmp_path_factory.mktemp("moe_one_process")
    recipe = make_run(folder / "single", *MOE)
    proc = train(recipe, folder, None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe.out


def _experts_match_one_process(
    moe_one_process,
    make_run,
    tmp_path,
    dp_shard: int,
    ep: int,
    dp_replicate: int = 1,
    weights_atol: float = 1e-5,
) -> None:
    # accelerate exports no ep size of the file it launches (the test's recipe file names none): the environment's
    config = accelerate_config(tmp_path, dp_replicate, dp_shard, 1, ep=ep)
    recipe = make_run(tmp_path / "ep", *MOE)
    proc = train(recipe, tmp_path, config, env={"PARALLELISM_CONFIG_EP_SIZE": str(ep)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    experts = f"expert parallel: 4 experts per MoE layer over {ep} ranks ({4 // ep} each"
    assert experts in (recipe.out / "pretrain.log").read_text()
    got, reference = _moe_steps(recipe.out), _moe_steps(moe_one_process)
    assert [r["step"] for r in got] == [r["step"] for r in reference] == list(range(1, MOE_STEPS + 1))
    for key in ("grad_norm", "loss", "objective", "aux_loss"):  # AdamW all but hides a gradient scale
        worst = max(abs(b[key] - a[key]) / abs(a[key]) for a, b in zip(reference, got))
        print(f"\nfsdp {dp_shard} x ep {ep}: {key} max relative difference {worst:.2e} over {len(got)} steps")
        print(f"one process: {' '.join(f'{a[key]:.6f}' for a in reference)}")
        print(f"ep:          {' '.join(f'{b[key]:.6f}' for b in got)}")
        assert [b[key] for b in got] == pytest.approx([a[key] for a in reference], rel=1e-4), key
    # the last checkpoint (written in the background from the ranks' shards) holds exactly final/'s weights
    with safe_open(recipe.out / "checkpoints" / "step-0000008" / "model.safetensors", "pt") as ckpt_file:
        with safe_open(recipe.out / "final" / "model.safetensors", "pt") as final_file:
            assert set(ckpt_file.keys()) == set(final_file.keys())
            assert all(
                torch.equal(ckpt_file.get_tensor(k), final_file.get_tensor(k)) for k in final_file.keys()
            )
    mine = AutoModelForCausalLM.from_pretrained(recipe.out / "final")
    theirs = AutoModelForCausalLM.from_pretrained(moe_one_process / "final")
    state, reference_state = mine.state_dict(), theirs.state_dict()
    assert state.keys() == reference_state.keys()
    assert mine.model.layers[0].mlp.experts.gate_up_proj.shape[0] == 4  # every expert, whole
    worst = max(float((state[k] - reference_state[k]).abs().max()) for k in state)
    print(f"final weights: max absolute difference {worst:.2e}")
    for key in state:
        torch.testing.assert_close(state[key], reference_state[key], rtol=1e-4, atol=weights_atol, msg=key)


def test_two_ranks_fsdp_by_expert_parallel_match_one_process(moe_one_process, make_run, tmp_path):
    _experts_match_one_process(moe_one_process, make_run, tmp_path, 2, 2)


@pytest.mark.slow
def test_four_ranks_two_copies_of_each_expert_split_match_one_process(moe_one_process, make_run, tmp_path):
    _experts_match_one_process(moe_one_process, make_run, tmp_path, 4, 2)


@pytest.mark.slow
def test_replicas_of_fsdp_by_expert_parallel_match_one_process(moe_one_process, make_run, tmp_path):
    """HSDP with experts: 2 replicas x FSDP 2, each replica's experts split over its 2 ranks, the two copies of
    each split FSDP-sharded over each other. Losses and grad norms as tight as the other meshes' (1e-7 / 2e-5);
    the final weights are 1.25e-5 apart at most (embedding rows of rare tokens, whose tiny gradients AdamW
    scales up), fp32 reduction order over two levels, so their bound is 2e-5 here. Before the experts' copies
    were sharded on one flattened dimension, FSDP2's HSDP over a shard dimension of 1 divided their gradient
    twice: aux loss 4.8e-4 and grad norm 5e-3 off."""
    _experts_match_one_process(moe_one_process, make_run, tmp_path, 2, 2, dp_replicate=2, weights_atol=2e-5)


@pytest.mark.slow
def test_expert_parallel_resumes_like_one_uninterrupted_run(moe_one_process, make_run, tmp_path):
    """FSDP 2 x EP 2 dies after its step-2 checkpoint, one process resumes from it (the split experts read whole)
    and dies after step 4, FSDP 2 x EP 2 resumes from that (whole experts read split) and finishes: every step's
    objective is the uninterrupted one-process run's."""
    recipe = make_run(
        tmp_path / "chain", *MOE, "train.checkpoint.every_steps=2", "train.checkpoint.async_save=false"
    )
    config, ep = accelerate_config(tmp_path, 1, 2, 1, ep=2), {"PARALLELISM_CONFIG_EP_SIZE": "2"}
    hops = [(config, 4), (None, 6), (config, None)]
    for i, (launch, die_at) in enumerate(hops):
        extra = ["--set", f"train.fault_injection.die_at={die_at}"] if die_at else []
        proc = train(recipe, tmp_path, launch, *extra, env=ep if launch else None)
        if die_at is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            assert proc.returncode == (DIE_EXIT_CODE if launch is None else 1), proc.stderr[-3000:]
        if i:
            resumed = recipe.out / "checkpoints" / f"step-{hops[i - 1][1] - 2:07d}"
            assert f"resumed from {resumed}" in proc.stderr
    got, reference = _moe_steps(recipe.out), _moe_steps(moe_one_process)
    assert [r["step"] for r in got] == list(range(1, MOE_STEPS + 1))
    worst = max(abs(b["objective"] - a["objective"]) / a["objective"] for a, b in zip(reference, got))
    print(f"\nresume chain ep 2 -> 1 -> ep 2: objective max relative difference {worst:.2e}")
    assert [b["objective"] for b in got] == pytest.approx([a["objective"] for a in reference], rel=1e-4)


@pytest.mark.slow
def test_muon_trains_the_dense_matrices_beside_expert_parallel_experts(make_run, tmp_path):
    """Muon takes the 2-D matrices (attention, routers: FSDP shards it gathers), AdamW the split 3-D experts."""
    muon = tuple(o.replace("adamw", "muon") for o in MOE)
    one = make_run(tmp_path / "one", *muon)
    assert (proc := train(one, tmp_path, None)).returncode == 0, proc.stderr[-3000:]
    recipe = make_run(tmp_path / "ep", *muon)
    proc = train(
        recipe, tmp_path, accelerate_config(tmp_path, 1, 2, 1, ep=2), env={"PARALLELISM_CONFIG_EP_SIZE": "2"}
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (
        "expert parallel: 4 experts per MoE layer over 2 ranks" in (recipe.out / "pretrain.log").read_text()
    )
    got, reference = _moe_steps(recipe.out), _moe_steps(one.out)
    assert [b["objective"] for b in got] == pytest.approx([a["objective"] for a in reference], rel=1e-4)

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

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pretrain.testing import write_recipe_file
from pretrain.train.metrics import step_losses

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# micro batch 2: every mesh below has at most 4 data-parallel ranks for the 8 windows of a 512-token step
COMMON = (
    "eval.enabled=false",
    "train.optimizer.name=adamw",
    "train.micro_batch_size=2",
    "train.tokens=6144",
)  # 12 steps


def accelerate_config(folder: Path, dp_replicate: int, dp_shard: int, tp: int) -> Path:
    """An accelerate launch config with a `parallelism_config:` section, as `accelerate config` writes it."""
    path = folder / f"mesh-{dp_replicate}x{dp_shard}x{tp}.yaml"
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
    path.write_text(yaml.safe_dump(settings))
    return path


def train(recipe, folder: Path, config: Path | None, *extra: str) -> subprocess.CompletedProcess:
    """`pretrain train` on one process (no config) or under `accelerate launch --config_file config`."""
    recipe_file = write_recipe_file(recipe, folder / f"{recipe.out.name}.yaml")
    launcher = [sys.executable]
    if config is not None:
        launcher += ["-m", "accelerate.commands.launch", "--config_file", str(config)]
    cmd = [*launcher, "-m", "pretrain", "train", str(recipe_file), "--output-dir", str(recipe.out)]
    cmd += ["--no-relaunch", *extra]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def one_process(make_run, tmp_path_factory):
    """The 1-process run every mesh is compared with: [(step, loss), ...]."""
    folder = tmp_path_factory.mktemp("one_process")
    recipe = make_run(folder / "single", *COMMON)
    proc = train(recipe, folder, None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return step_losses(recipe.out / "metrics.jsonl")


def _matches_one_process(one_process, make_run, tmp_path, sizes: tuple[int, int, int]) -> None:
    recipe = make_run(tmp_path / "mesh", *COMMON)
    proc = train(recipe, tmp_path, accelerate_config(tmp_path, *sizes))
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = step_losses(recipe.out / "metrics.jsonl")
    assert [s for s, _ in got] == [s for s, _ in one_process] == list(range(1, 13))
    worst = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(one_process, got))
    print(f"\nmesh {sizes}: max relative loss difference {worst:.2e} over {len(got)} steps")
    assert [b for _, b in got] == pytest.approx([a for _, a in one_process], rel=1e-4)


def test_four_ranks_fsdp_by_tensor_parallel_match_one_process(one_process, make_run, tmp_path):
    _matches_one_process(one_process, make_run, tmp_path, (1, 2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(1, 2, 1), (1, 1, 2), (2, 2, 1)], ids=["fsdp2", "tp2", "hsdp2x2"])
def test_each_mesh_matches_one_process(one_process, make_run, tmp_path, sizes):
    _matches_one_process(one_process, make_run, tmp_path, sizes)

"""2-process DDP on CPU (gloo): same losses as 1 process with the same global batch; a dead rank stops the other.

`accelerate launch --multi_gpu --num_processes 2` (plain `--cpu --num_processes 2` silently runs one process;
on a machine without CUDA the loop passes `cpu=True` to accelerate so the 2 processes form a gloo group).
Both runs see the same windows per optimizer step (the loader slices one permutation by rank), so the losses
differ only by floating-point reduction order: compared at rel 1e-4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pretrain.testing import write_recipe_file
from pretrain.train.metrics import step_losses

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _launch(recipe, path, ranks: int, env=ENV):
    prefix = (
        [sys.executable, "-m", "pretrain"]
        if ranks == 1
        else [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(ranks),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "pretrain",
        ]
    )
    cmd = [*prefix, "train", str(write_recipe_file(recipe, path)), "--output-dir", str(recipe.out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_two_process_ddp_matches_single_process(fresh_run, tmp_path):
    single, single_out = fresh_run("single", "eval.enabled=false", "train.tokens=8192")
    ddp, ddp_out = fresh_run("ddp", "eval.enabled=false", "train.tokens=8192")
    assert _launch(single, tmp_path / "single.yaml", 1).returncode == 0
    proc = _launch(ddp, tmp_path / "ddp.yaml", 2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    a, b = step_losses(single_out / "metrics.jsonl"), step_losses(ddp_out / "metrics.jsonl")
    assert len(a) == len(b) == 16
    assert [loss for _, loss in b] == pytest.approx([loss for _, loss in a], rel=1e-4)
    state = ddp_out / "checkpoints" / "step-0000016" / "trainer_state"
    assert json.loads((state / "state.json").read_text())["world_size"] == 2
    assert (state / "rank-00001.json").exists()


def test_dead_rank_stops_the_other_with_an_error(fresh_run, tmp_path):
    recipe, _ = fresh_run(
        "run",
        "eval.enabled=false",
        "train.collective_timeout_s=60",
        "train.fault_injection.die_at=5",
        "train.fault_injection.die_rank=1",
    )
    start = time.monotonic()
    proc = _launch(recipe, tmp_path / "r.yaml", 2)
    assert proc.returncode != 0
    assert time.monotonic() - start < 180
    assert "exitcode" in proc.stderr and "rank" in proc.stderr.lower()

"""2-process DDP on CPU (gloo) gives the same losses as 1 process with the same global batch.

`accelerate launch --multi_gpu --num_processes 2` (plain `--cpu --num_processes 2` silently runs one process).
The two runs see the same windows per optimizer step (the loader slices one permutation by rank), so losses
differ only by floating-point reduction order: compared at rel 1e-4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml


def _losses(out):
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r and "event" not in r]


def _write(recipe, path):
    data = recipe.model_dump(mode="json")
    data["accelerate_config"] = None
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_process_ddp_matches_single_process(small_run, make_small_recipe, tmp_path):
    _, src = small_run
    runs = {}
    for name in ("single", "ddp"):
        out = tmp_path / name
        out.mkdir()
        for stage in ("mix", "tokenizer", "tokens"):
            shutil.copytree(src / stage, out / stage)
        recipe = make_small_recipe(out, "eval.enabled=false", "train.tokens=8192")
        runs[name] = (out, _write(recipe, tmp_path / f"{name}.yaml"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out, path = runs["single"]
    subprocess.run(
        [sys.executable, "-m", "pretrain", "train", str(path), "--output-dir", str(out)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    out, path = runs["ddp"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "pretrain",
            "train",
            str(path),
            "--output-dir",
            str(out),
        ],
        env={**env, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    single, ddp = _losses(runs["single"][0]), _losses(runs["ddp"][0])
    assert len(single) == len(ddp) == 16
    assert ddp == pytest.approx(single, rel=1e-4)
    state = json.loads(
        (runs["ddp"][0] / "checkpoints" / "step-0000016" / "trainer_state" / "state.json").read_text()
    )
    assert state["world_size"] == 2
    assert (runs["ddp"][0] / "checkpoints" / "step-0000016" / "trainer_state" / "rank-00001.json").exists()


def test_dead_rank_stops_the_other_with_an_error(small_run, make_small_recipe, tmp_path):
    _, src = small_run
    out = tmp_path / "run"
    out.mkdir()
    for stage in ("mix", "tokenizer", "tokens"):
        shutil.copytree(src / stage, out / stage)
    recipe = make_small_recipe(out, "eval.enabled=false", "train.collective_timeout_s=60")
    path = _write(recipe, tmp_path / "r.yaml")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PRETRAIN_FAULT_INJECT": "die@5",
        "PRETRAIN_FAULT_RANK": "1",
    }
    start = __import__("time").monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "pretrain",
            "train",
            str(path),
            "--output-dir",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = __import__("time").monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 180
    assert "exitcode" in proc.stderr or "rank" in proc.stderr.lower()

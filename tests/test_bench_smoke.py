"""The benchmarks must not rot: the CPU variant of the training-throughput bench runs and prints its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_train_throughput_cpu_tiny(repo_root):
    proc = subprocess.run(
        [
            sys.executable,
            "bench/train_throughput.py",
            "--device",
            "cpu",
            "--tiny",
            "--shapes",
            "smollm2-135m",
            "--iters",
            "2",
            "--lever",
            "plain-bf16=train.fused_cross_entropy=false,train.precision=bf16-mixed,threads=1",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "train_throughput" and result["device"] == "cpu"
    row = result["results"][0]
    assert row["ours_tok_s"] > 0 and row["baseline_tok_s"] > 0 and row["speedup"] > 0
    assert set(row["levers"]) == {"plain-bf16"} and row["levers"]["plain-bf16"] > 0


@pytest.mark.slow  # a whole search and 6 full runs at tiny sizes: minutes on 2 busy cores
def test_mixture_search_quick(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/mixture_search.py", "--quick", "--out", str(tmp_path / "bench")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "mixture_search" and result["proxies"] == 5 and result["seeds"] == [8, 9]
    for key in (
        "proxy_flops_fraction",
        "target_default",
        "target_uniform",
        "target_proposed",
        "target_predicted",
    ):
        assert result[key] > 0, key
    assert abs(sum(result["weights_proposed"].values()) - 1) < 1e-6

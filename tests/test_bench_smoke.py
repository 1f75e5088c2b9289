"""The benchmarks must not rot: the CPU variant of the training-throughput bench runs and prints its JSON line;
the parallel benches' `--quick` modes (slow: each launches CPU ranks) run and print theirs."""

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


def _bench(repo_root, script: str) -> dict:
    proc = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_parallel_memory_quick_measures_and_plans_three_meshes(repo_root):
    result = _bench(repo_root, "parallel_memory.py")
    assert result["bench"] == "parallel_memory" and len(result["shapes"]) == 3
    assert all(row["measured_mb"] > 0 and row["planned_mb"] > 0 for row in result["shapes"])


@pytest.mark.slow
def test_async_checkpoint_quick_compares_the_save_paths(repo_root):
    result = _bench(repo_root, "async_checkpoint.py")
    assert result["bench"] == "async_checkpoint" and result["ranks"] == 4
    assert set(result["extra_peak_rss_mb"]) == {"sharded_async", "sharded_sync", "gather"}
    assert result["step_s"]["plain"] > 0 and result["step_s"]["with_sync_save"] > 0


@pytest.mark.slow
def test_parallel_eval_quick_gives_one_process_numbers(repo_root):
    result = _bench(repo_root, "parallel_eval.py")
    assert result["bench"] == "parallel_eval" and result["same_numbers"] is True
    assert result["one_rank_s"] > 0 and result["two_ranks_s"] > 0


@pytest.mark.slow  # curate -> pack, then 2 x 40 steps (~1 min)
def test_long_context_quick_scores_both_arms_on_the_same_windows(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/long_context.py", "--quick", "--output-dir", str(tmp_path / "long")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "long_context" and result["windows"] > 0
    buckets = ["loss@1-256", "loss@257-512", "loss@513-1024"]
    assert list(result["with_stage"]) == list(result["without_stage"]) == buckets
    assert [r["seed"] for r in result["per_seed"]] == [1234] and result["short_change_stderr_pct"] is None
    assert {"long_gain_pct", "short_change_pct", "train_s"} <= set(result)

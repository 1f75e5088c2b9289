"""Hardware failure: one of 2 CPU ranks dies mid-run (as a lost node would); the relaunching process, which
supervises the launch (core/supervisor.py), starts the job again, which resumes from the last complete
checkpoint and finishes with the uninterrupted run's per-step losses and data position; the restart is an event
in metrics.jsonl and a line in the model card."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pretrain.commands.card import write_model_card
from pretrain.core.launcher import launcher_restarts
from pretrain.train.faults import FaultInjector
from pretrain.train.metrics import read_records, restart_count, step_losses


def test_restarted_processes_do_not_die_again():
    from pretrain.config.stability import FaultInjectionConfig

    cfg = FaultInjectionConfig(die_at=7, die_rank=1)
    assert FaultInjector.from_config(cfg, rank=1, restarts=0).plan == {7: "die"}
    assert FaultInjector.from_config(cfg, rank=1, restarts=1).plan == {}
    assert FaultInjector.from_config(cfg, rank=0, restarts=0).plan == {}
    assert launcher_restarts({"TORCHELASTIC_RESTART_COUNT": "2"}) == 2 and launcher_restarts({}) == 0
    assert restart_count([{"event": "restart", "restarts": 1}, {"event": "start"}]) == 1


def _train(out, repo_root, small_run_overrides, *extra):
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    recipe = repo_root / "recipes" / "tiny" / "config.yaml"
    sets = ["eval.enabled=false", "train.checkpoint.every_steps=4", f"accelerate_config={config}", *extra]
    cmd = [
        sys.executable,
        "-m",
        "pretrain",
        "train",
        str(recipe),
        "--output-dir",
        str(out),
        *small_run_overrides,
    ]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_a_killed_rank_restarts_the_job_from_its_checkpoint(
    make_run, small_run_overrides, tmp_path, repo_root
):
    ref_out, out = tmp_path / "reference", tmp_path / "killed"
    make_run(ref_out)
    make_run(out)
    reference = _train(ref_out, repo_root, small_run_overrides)
    assert reference.returncode == 0, reference.stderr[-3000:]
    proc = _train(
        out,
        repo_root,
        small_run_overrides,
        "train.fault_injection.die_at=7",
        "train.fault_injection.die_rank=1",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "restart 1 of at most 3 (train.max_restarts)" in proc.stderr

    records = read_records(out / "metrics.jsonl")
    restarts = [r for r in records if r.get("event") == "restart"]
    assert len(restarts) == 1 and restarts[0]["restarts"] == 1
    assert restarts[0]["step"] == 4 and restarts[0]["resumed_from"].endswith("step-0000004")
    assert "restart 1 of at most 3 by the launcher" in proc.stderr

    ref, got = step_losses(ref_out / "metrics.jsonl"), step_losses(out / "metrics.jsonl")
    assert [s for s, _ in got] == list(range(1, 25))
    assert got == ref
    last = "checkpoints/step-0000024/trainer_state/rank-00001.json"
    assert (
        json.loads((out / last).read_text())["loader"] == json.loads((ref_out / last).read_text())["loader"]
    )

    from pretrain.config import load_recipe

    recipe = load_recipe(out / "recipe.resolved.yaml", output_dir=str(out), check_files=False)
    card = write_model_card(recipe, out / "final").read_text()
    assert "| restarts | 1 (a process died" in card

"""kill -9 in the middle of `pretrain train`, then `--resume auto`: the per-step losses equal an uninterrupted run.

One trial here (CI); `bench/fault_injection.py` repeats it with random kill points and prints the tally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pretrain.testing import write_recipe_file
from pretrain.train.metrics import step_losses


def _start(recipe, tmp_path):
    path = write_recipe_file(recipe, tmp_path / f"{recipe.out.name}.yaml")
    return subprocess.Popen(
        [sys.executable, "-m", "pretrain", "train", str(path), "--output-dir", str(recipe.out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_kill_9_then_resume_auto_is_exact(fresh_run, tmp_path):
    overrides = (
        "eval.enabled=false",
        "train.checkpoint.every_steps=3",
        "train.validation.every_fraction=0.5",
    )
    reference, ref_out = fresh_run("reference", *overrides)
    killed, out = fresh_run("killed", *overrides)
    ref = _start(reference, tmp_path)
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-3000:]

    proc = _start(killed, tmp_path)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if len(step_losses(out / "metrics.jsonl")) >= 13:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists(), "the run finished before the kill; make it longer"
    resumed = _start(killed, tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert "resumed from" in resumed.stderr.read()
    assert step_losses(out / "metrics.jsonl") == step_losses(ref_out / "metrics.jsonl")
    assert not list(out.rglob("*.tmp-*")), "the killed attempt's temporary files are left"


def test_sigterm_stops_pretrain_run_cleanly_and_the_same_command_finishes_it(fresh_run, tmp_path):
    """A scheduler's SIGTERM mid-training: `pretrain run` checkpoints and exits 143 (128 + SIGTERM: stopped, not
    finished) with a resume hint, no traceback (it used to die writing the card into a `final/` that training had
    not made, then to exit 0); rerun, it finishes the card."""
    recipe, out = fresh_run("stopped", "eval.enabled=false", "train.checkpoint.every_steps=100")
    path = write_recipe_file(recipe, tmp_path / "stopped.yaml")
    cmd = [sys.executable, "-m", "pretrain", "run", str(path), "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not step_losses(out / "metrics.jsonl"):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=600)[1]
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert not (out / "final").exists(), "the run finished before the signal; make it longer"
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr
    stopped_at = len(step_losses(out / "metrics.jsonl"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and (out / "final" / "README.md").exists()
    assert not list(out.rglob("*.tmp-*"))
    assert len(step_losses(out / "metrics.jsonl")) > stopped_at


def _start_paused(recipe, tmp_path, command: str = "train", pause_s: int = 60):
    """`pretrain COMMAND` whose 3rd step sleeps `pause_s` first; returns the process once step 2 is logged."""
    path = write_recipe_file(recipe, tmp_path / f"{recipe.out.name}.yaml")
    cmd = [
        sys.executable,
        "-m",
        "pretrain",
        command,
        str(path),
        "--output-dir",
        str(recipe.out),
        "--no-preflight",
    ]
    cmd += [
        "--set",
        "train.fault_injection.pause_at=[3]",
        "--set",
        f"train.fault_injection.pause_s={pause_s}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and len(step_losses(recipe.layout.metrics)) < 2:
        time.sleep(0.02)
    return proc


def test_ctrl_c_checkpoints_then_exits_130(fresh_run, tmp_path):
    """Case 5 of issue #31: Ctrl-C saved a checkpoint and exited 0, so `pretrain train ... && pretrain push ...`
    pushed a half-trained model. Now: the checkpoint of the step in progress, then exit 130."""
    recipe, out = fresh_run("ctrl_c", "eval.enabled=false", "train.checkpoint.every_steps=100")
    proc = _start_paused(
        recipe, tmp_path, pause_s=5
    )  # the signal lands in step 3's pause; the step then ends
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=600)[1]
    assert proc.returncode == 130, stderr[-3000:]
    assert (out / "checkpoints" / "step-0000003").is_dir() and not (out / "final").exists()
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr


def test_a_second_ctrl_c_aborts_without_waiting_for_the_step(fresh_run, tmp_path):
    recipe, out = fresh_run("ctrl_c_twice", "eval.enabled=false", "train.checkpoint.every_steps=100")
    proc = _start_paused(recipe, tmp_path)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)  # a second press, not the first delivered twice (preemption.REPEAT_AFTER_S)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=600)[1]
    assert proc.returncode == 130, stderr[-3000:]
    assert time.monotonic() - start < 30, "waited for the 60 s step instead of aborting"
    assert not (out / "checkpoints" / "step-0000003").exists()
    assert "again: stopping now, without a stop checkpoint" in stderr

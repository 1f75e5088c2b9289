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
    """A scheduler's SIGTERM mid-training: `pretrain run` checkpoints and exits 0 with a resume hint, no traceback
    (it used to die writing the card into a `final/` that training had not made); rerun, it finishes the card."""
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
    assert proc.returncode == 0, stderr[-3000:]
    assert not (out / "final").exists(), "the run finished before the signal; make it longer"
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr
    stopped_at = len(step_losses(out / "metrics.jsonl"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and (out / "final" / "README.md").exists()
    assert not list(out.rglob("*.tmp-*"))
    assert len(step_losses(out / "metrics.jsonl")) > stopped_at

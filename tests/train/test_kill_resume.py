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

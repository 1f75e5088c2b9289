"""kill -9 in the middle of `pretrain train`, then `--resume auto`: the per-step losses equal an uninterrupted run.

One trial here (CI); `bench/fault_injection.py` repeats it with random kill points and prints the tally.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml


def _losses(out):
    rows = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "loss" in r and "event" not in r:
            rows.append((r["step"], r["loss"]))
    return rows


def _start(recipe_file, out):
    return subprocess.Popen(
        [sys.executable, "-m", "pretrain", "train", str(recipe_file), "--output-dir", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_kill_9_then_resume_auto_is_exact(small_run, make_small_recipe, tmp_path):
    _, src = small_run
    recipe = make_small_recipe(
        tmp_path / "unused",
        "eval.enabled=false",
        "train.checkpoint.every_steps=3",
        "train.validation.every_fraction=0.5",
    )
    raw = recipe.model_dump(mode="json")
    raw["accelerate_config"] = None
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    outs = {}
    for name in ("reference", "killed"):
        outs[name] = tmp_path / name
        for stage in ("mix", "tokenizer", "tokens"):
            shutil.copytree(src / stage, outs[name] / stage)
    ref = _start(recipe_file, outs["reference"])
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-3000:]

    proc = _start(recipe_file, outs["killed"])
    metrics = outs["killed"] / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and metrics.read_text().count('"loss"') >= 13:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (outs["killed"] / "final").exists(), "the run finished before the kill; make it longer"
    resumed = _start(recipe_file, outs["killed"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert "resumed from" in resumed.stderr.read()
    assert _losses(outs["killed"]) == _losses(outs["reference"])

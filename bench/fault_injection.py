"""Kill -9 at a random step, resume with `--resume auto`, compare every per-step loss with an uninterrupted run.

    python bench/fault_injection.py --trials 20

A small llama on the tiny recipe's builtin data (checkpoint every 2 steps, fp32 on CPU). Each trial starts
`pretrain train` in a subprocess, SIGKILLs it once metrics.jsonl shows a random step (so the kill can land
anywhere: mid-step, mid-checkpoint-write, mid-log-line), then resumes and checks the full loss sequence equals
the reference run's exactly. Last stdout line: {"bench": "kill_resume", "trials": N, "identical": K}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.testing import SMOKE_SHAPE  # noqa: E402
from pretrain.train.metrics import read_records, step_losses  # noqa: E402

OVERRIDES = [
    *SMOKE_SHAPE,
    "data.mixture.target_bytes=600000",
    "tokenizer.sample_bytes=300000",
    "eval.enabled=false",
    "train.tokens=15360",
    "train.checkpoint.every_steps=2",
    "train.validation.every_fraction=0.5",
]


def losses(out: Path) -> list[tuple[int, float]]:
    return step_losses(out / "metrics.jsonl")


def train(recipe_file: Path, out: Path, wait: bool = True) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pretrain",
        "train",
        str(recipe_file),
        "--output-dir",
        str(out),
        "--resume",
        "auto",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if wait:
        _, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(f"training failed:\n{err[-3000:]}")
    return proc


def last_step(out: Path) -> int:
    return max((r.get("step", 0) for r in read_records(out / "metrics.jsonl")), default=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_run = tmp / "data"
        recipe = load_recipe(
            REPO / "recipes" / "tiny" / "config.yaml", overrides=OVERRIDES, output_dir=str(data_run)
        )
        for stage in ("curate", "tokenizer", "pack"):
            run_stage(recipe, stage)
        recipe_file = tmp / "recipe.yaml"
        raw = recipe.model_dump(mode="json")
        raw["accelerate_config"] = None
        recipe_file.write_text(yaml.safe_dump(raw))

        def fresh(name: str) -> Path:
            out = tmp / name
            for stage in ("mix", "tokenizer", "tokens"):
                shutil.copytree(data_run / stage, out / stage)
            return out

        ref_out = fresh("reference")
        train(recipe_file, ref_out)
        reference = losses(ref_out)
        identical = 0
        for trial in range(args.trials):
            out = fresh(f"trial{trial}")
            kill_at = rng.randint(3, recipe.train.tokens // recipe.train.global_batch_tokens - 2)
            proc = train(recipe_file, out, wait=False)
            deadline = time.monotonic() + 300
            while last_step(out) < kill_at and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))  # land anywhere inside the following step / checkpoint write
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = last_step(out)
            train(recipe_file, out)
            got = losses(out)
            same = got == reference
            identical += same
            print(
                f"trial {trial:2d}: killed after step {killed_at:2d} -> resumed, {len(got)} steps, "
                f"{'identical' if same else 'DIFFERENT'}"
            )
            shutil.rmtree(out)
    print(json.dumps({"bench": "kill_resume", "trials": args.trials, "identical": identical}))


if __name__ == "__main__":
    main()

"""Context extension: held-out loss by position bucket of the tiny-long recipe against the same model trained
without its long stage (the same data, steps, tokens and schedule, every step at 256 tokens).

    python bench/long_context.py [--quick] [--output-dir /tmp/long_context] [--set KEY=VALUE ...]

Runs curate -> tokenizer -> pack once for `recipes/tiny-long`, then trains it twice: as shipped (the last 20% of
the tokens at seq_len 1,024) and with the long stage's seq_len, RoPE and masking taken out. Both final models are
scored by the `position_loss` task (evaluation/position_loss.py) on the same windows of held-out documents longer
than 1,024 tokens. The issue's targets: loss at positions 513-1,024 at least 10% below the baseline's, and at
1-256 at most 2% worse. `--quick` trains 40 steps instead of 400 (checks that it runs; the figures mean nothing).
Last stdout line: {"bench": "long_context", "with_stage": {bucket: loss}, "without_stage": {...},
"long_gain_pct": x, "short_change_pct": y, "windows": n (held-out windows of 1,025 tokens), "steps": s,
"train_s": {...}}
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.evaluation.position_loss import PositionLoss, held_out_windows, recipe_bounds  # noqa: E402
from pretrain.testing import run_train_stage  # noqa: E402

RECIPE = REPO / "recipes" / "tiny-long" / "config.yaml"
QUICK = ["train.tokens=163840", "data.mixture.target_bytes=3000000", "tokenizer.sample_bytes=1000000"]


def without_long_stage(recipe) -> str:
    """A `--set` that keeps the stages' shares and weights but trains every step at train.seq_len."""
    stages = [{"name": s.name, "share": s.share, "weights": s.weights} for s in recipe.train.data_stages]
    return "train.data_stages=" + json.dumps(stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", type=Path, default=Path("/tmp/bench_long_context"))
    ap.add_argument("--quick", action="store_true", help="40 steps on a smaller mix: checks that it runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    common = ["eval.enabled=false", *(QUICK if args.quick else []), *args.overrides]
    runs = {"with_stage": args.output_dir / "with_stage", "without_stage": args.output_dir / "without_stage"}
    shutil.rmtree(args.output_dir, ignore_errors=True)
    data = load_recipe(RECIPE, overrides=common, output_dir=str(runs["with_stage"]))
    for stage in ("curate", "tokenizer", "pack"):
        run_stage(data, stage)
    runs["without_stage"].mkdir(parents=True)
    for folder in ("mix", "tokenizer", "tokens"):
        shutil.copytree(runs["with_stage"] / folder, runs["without_stage"] / folder)
    baseline = [*common, without_long_stage(data)]
    recipes = {
        "with_stage": data,
        "without_stage": load_recipe(RECIPE, overrides=baseline, output_dir=str(runs["without_stage"])),
    }
    # both scored on tiny-long's buckets (1-256, 257-512, 513-1024) and the same held-out windows
    bounds = recipe_bounds(data)
    tokenizer = AutoTokenizer.from_pretrained(data.layout.tokenizer)
    windows = held_out_windows(data.out, tokenizer, bounds[-1])
    score = PositionLoss(windows, bounds)
    losses, seconds = {}, {}
    for name, recipe in recipes.items():
        start = time.perf_counter()
        final = run_train_stage(recipe)
        seconds[name] = round(time.perf_counter() - start, 1)
        metrics = score(AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32))
        losses[name] = {k.rsplit("/", 1)[1]: round(v, 4) for k, v in metrics.items()}
        print(f"{name}: {losses[name]} ({seconds[name]} s)", flush=True)
    first, last = list(losses["with_stage"])[0], list(losses["with_stage"])[-1]
    gain = 100 * (1 - losses["with_stage"][last] / losses["without_stage"][last])
    change = 100 * (losses["with_stage"][first] / losses["without_stage"][first] - 1)
    print(
        f"positions {last.split('@')[1]}: {gain:.1f}% lower with the stage; {first.split('@')[1]}: {change:+.2f}%"
    )
    print(
        json.dumps(
            {
                "bench": "long_context",
                "with_stage": losses["with_stage"],
                "without_stage": losses["without_stage"],
                "long_gain_pct": round(gain, 2),
                "short_change_pct": round(change, 2),
                "windows": len(windows),
                "steps": recipes["with_stage"].train.total_steps(0),
                "train_s": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()

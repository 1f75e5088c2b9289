"""Mixture of experts: the experts' load at the end of tiny-moe trained with its router's load-balancing loss
and without it (`router_aux_loss_coef: 0`), same data, steps and seed.

    python bench/moe_balance.py [--quick] [--output-dir /tmp/moe_balance] [--set KEY=VALUE ...]

Runs curate -> tokenizer -> pack once for `recipes/tiny-moe`, trains it twice, and reads the last step record of
each run's metrics.jsonl: per MoE layer the largest share of the routed token slots one expert received (1/8 when
balanced), the aux loss, and the final validation loss. The issue's target: with the aux loss, the largest expert
share per layer at the end below the share without it. `--quick` trains 40 steps instead of 400 (checks that it
runs). Last stdout line: {"bench": "moe_balance", "with_aux": {"expert_share_max": [...], "aux_loss": x,
"val_loss": y}, "without_aux": {...}, "balanced_share": 0.125, "lower_in_every_layer": bool, "train_s": {...}}
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

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.testing import run_train_stage  # noqa: E402
from pretrain.train.metrics import read_records, step_records, validation_records  # noqa: E402

RECIPE = REPO / "recipes" / "tiny-moe" / "config.yaml"
QUICK = ["train.tokens=163840", "data.mixture.target_bytes=3000000", "tokenizer.sample_bytes=1000000"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", type=Path, default=Path("/tmp/bench_moe_balance"))
    ap.add_argument("--quick", action="store_true", help="40 steps on a smaller mix: checks that it runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    common = ["eval.enabled=false", *(QUICK if args.quick else []), *args.overrides]
    runs = {"with_aux": args.output_dir / "with_aux", "without_aux": args.output_dir / "without_aux"}
    shutil.rmtree(args.output_dir, ignore_errors=True)
    recipes = {"with_aux": load_recipe(RECIPE, overrides=common, output_dir=str(runs["with_aux"]))}
    for stage in ("curate", "tokenizer", "pack"):
        run_stage(recipes["with_aux"], stage)
    runs["without_aux"].mkdir(parents=True)
    for folder in ("mix", "tokenizer", "tokens"):
        shutil.copytree(runs["with_aux"] / folder, runs["without_aux"] / folder)
    off = [*common, "model.router_aux_loss_coef=0.0"]
    recipes["without_aux"] = load_recipe(RECIPE, overrides=off, output_dir=str(runs["without_aux"]))
    results, seconds = {}, {}
    for name, recipe in recipes.items():
        start = time.perf_counter()
        run_train_stage(recipe)
        seconds[name] = round(time.perf_counter() - start, 1)
        records = read_records(recipe.layout.metrics)
        last = step_records(records)[-1]
        results[name] = {
            "expert_share_max": last["expert_share_max"],
            "expert_share_min": last["expert_share_min"],
            "aux_loss": round(last["aux_loss"], 4),
            "val_loss": round(validation_records(records)[-1]["val/loss"], 4),
        }
        print(f"{name}: {results[name]} ({seconds[name]} s)", flush=True)
    pairs = zip(results["with_aux"]["expert_share_max"], results["without_aux"]["expert_share_max"])
    lower = all(a < b for a, b in pairs)
    for layer, (a, b) in enumerate(
        zip(results["with_aux"]["expert_share_max"], results["without_aux"]["expert_share_max"])
    ):
        print(
            f"layer {layer}: largest expert share {a:.3f} with the aux loss, {b:.3f} without (balanced 0.125)"
        )
    spec_experts = recipes["with_aux"].model.hf_fields["num_experts"]
    print(
        json.dumps(
            {
                "bench": "moe_balance",
                **results,
                "balanced_share": round(1 / spec_experts, 4),
                "lower_in_every_layer": lower,
                "steps": recipes["with_aux"].train.total_steps(0),
                "train_s": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()

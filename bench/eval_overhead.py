"""In-loop evaluation overhead: time spent evaluating vs time spent training, at the default interval (10%).

    python bench/eval_overhead.py                       # the tiny recipe (200 steps), in a temporary output dir
    python bench/eval_overhead.py --set train.tokens=6553600    # the same recipe trained 4x longer (800 steps)
    python bench/eval_overhead.py --recipe R --set eval.limit=200

Runs the data stages, then `Trainer.run()` with the recipe's in-loop evaluation. Evaluation time is the
lm-eval evaluator's own clock plus the loop's held-out validation passes (`val/seconds` in metrics.jsonl);
training time is the rest of the run, less the evaluator's one-time setup before the first step (loading the
tasks: importing lm-eval and `datasets`, reading the task data), which is reported on its own as `setup_s`
and does not recur with the number of evaluations. An evaluation costs a fixed time (its tasks and limit), so the
overhead falls as the interval between evaluations (run length x every_fraction) grows.
Last stdout line: {"bench": "eval_overhead", "train_s", "eval_s", "overhead_pct", "evals", "lm_eval_s",
"validation_s", "setup_s", "steps", "tasks"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.commands.stages import stage_output  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.train.loop import Trainer  # noqa: E402
from pretrain.train.metrics import read_records, validation_records  # noqa: E402
from pretrain.train.setup import prepare_process  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=REPO / "recipes" / "tiny" / "config.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(args.recipe, overrides=args.overrides, output_dir=tmp)
        for stage in ("curate", "tokenizer", "pack"):
            run_stage(recipe, stage)
        prepare_process()
        trainer = Trainer(recipe, stage_output(recipe, "train"), resume="never")
        start = time.perf_counter()
        trainer.run()
        total = time.perf_counter() - start
        evaluator = trainer.setup.evaluator
        lm_eval_s = evaluator.seconds if evaluator else 0.0
        setup_s = evaluator.setup_seconds if evaluator else 0.0
        records = read_records(recipe.layout.metrics)
        validation_s = sum(r["val/seconds"] for r in validation_records(records))
        evals = len(list(recipe.layout.evals.glob("step-*.json")))
    eval_s = lm_eval_s + validation_s
    train_s = total - eval_s - setup_s
    print(
        f"{recipe.name}: {trainer.state.step} steps, {evals} evaluations of {recipe.eval.tasks} (limit {recipe.eval.limit})"
    )
    print(
        f"training {train_s:.1f} s, evaluation {eval_s:.1f} s: lm-eval {lm_eval_s:.1f} s "
        f"({lm_eval_s / max(evals, 1):.2f} s each) + validation passes {validation_s:.1f} s; "
        f"tasks loaded once before the first step in {setup_s:.1f} s"
    )
    print(
        json.dumps(
            {
                "bench": "eval_overhead",
                "train_s": round(train_s, 2),
                "eval_s": round(eval_s, 2),
                "overhead_pct": round(100 * eval_s / train_s, 2),
                "evals": evals,
                "lm_eval_s": round(lm_eval_s, 2),
                "validation_s": round(validation_s, 2),
                "setup_s": round(setup_s, 2),
                "steps": trainer.state.step,
                "tasks": recipe.eval.tasks,
            }
        )
    )


if __name__ == "__main__":
    main()

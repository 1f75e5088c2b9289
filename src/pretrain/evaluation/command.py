"""`pretrain eval CHECKPOINT|OUTPUT_DIR`: lm-eval on one checkpoint, or learning curves over a run.

    pretrain eval outputs/tiny/final --tasks val_bpb,stdlib_cloze --limit 200
    pretrain eval outputs/tiny                       # every checkpoints/step-*/ and final/ -> evals/summary.*

On one checkpoint this makes the same lm-eval call as
`lm_eval --model hf --model_args pretrained=CKPT --tasks T --include_path RUN/evals/tasks`,
so the numbers are identical.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import marker_summary
from pretrain.core.progress import capture_run_output, get_logger
from pretrain.core.runs import recipe_of_run, run_dir_of
from pretrain.evaluation.harness import checkpoint_chance_levels, evaluate_checkpoint, flatten
from pretrain.evaluation.metrics import eval_line, task_facts
from pretrain.evaluation.records import EvalRecord, write_eval_record
from pretrain.evaluation.report import summarize_run
from pretrain.evaluation.task_yaml import all_task_names, write_task_yamls

log = get_logger("pretrain.eval")


def evaluate_one(args, checkpoint: Path, run_dir: Path) -> dict:
    recipe = recipe_of_run(run_dir, checkpoint, args.recipe, args.overrides)
    tasks = (
        [t for t in args.tasks.split(",") if t] if args.tasks else (all_task_names(recipe) if recipe else [])
    )
    if not tasks:
        raise PretrainError(f"{checkpoint}: no tasks given and no recipe found for the run; pass --tasks")
    ev = recipe.eval if recipe else None
    include, local = write_task_yamls(run_dir, recipe, tasks)
    limit = args.limit if args.limit is not None else (ev.limit if ev else None)
    results = evaluate_checkpoint(
        checkpoint,
        include,
        tasks,
        local,
        limit=limit,
        batch_size=args.batch_size or (ev.batch_size if ev else 8),
        num_fewshot=args.num_fewshot
        if args.num_fewshot is not None
        else (ev.num_fewshot or None if ev else None),
    )
    return {
        "checkpoint": str(checkpoint),
        "tasks": tasks,
        "metrics": flatten(results),
        "results": results.get("results", {}),
        "include_path": str(include),
        "task_facts": task_facts(results, checkpoint_chance_levels(include, tasks, local, limit)),
    }


def run_eval_command(args) -> int:
    """lm-eval's own progress bars and warnings go to the run's log file (`RunLayout.log_file`)."""
    path = Path(args.checkpoint)
    if not path.exists():
        raise PretrainError(f"{path}: no such checkpoint or output directory")
    if (path / "config.json").exists():
        with capture_run_output(RunLayout(run_dir_of(path)).log_file):
            record = evaluate_one(args, path, run_dir_of(path))
        out = path / "eval_results.json"
        write_json_atomic(out, record)
        print(json.dumps(record["metrics"] if not args.json else record, indent=2))
        return 0
    with capture_run_output(RunLayout(path).log_file):
        summary = _evaluate_run(args, path)
    print(RunLayout(path).eval_summary_md.read_text())
    return 0 if summary["rows"] else 1


def _evaluate_run(args, run_dir: Path) -> dict:
    """Every checkpoint of a run (and final/), then the run's learning curves; returns the summary."""
    layout = RunLayout(run_dir)
    checkpoints = sorted(layout.checkpoints.glob("step-*")) + (
        [layout.final] if layout.final.exists() else []
    )
    if not checkpoints:
        raise PretrainError(f"{run_dir}: no checkpoints/step-*/ or final/ to evaluate")
    for ckpt in checkpoints:
        start = time.perf_counter()
        record = evaluate_one(args, ckpt, run_dir)
        state = ckpt / "trainer_state" / "state.json"
        meta = json.loads(state.read_text()) if state.exists() else {}
        if not meta and (summary := marker_summary(ckpt)):
            meta = {"step": summary.get("steps"), "tokens_seen": summary.get("tokens")}
        step = meta.get("step") or 0
        write_eval_record(
            layout,
            EvalRecord(
                step=step,
                tokens_seen=meta.get("tokens_seen"),
                checkpoint=str(ckpt),
                tasks=record["tasks"],
                metrics=record["metrics"],
                results=record["results"],
                include_path=record["include_path"],
                task_facts=record["task_facts"],
            ),
        )
        line = eval_line(step, record["metrics"], record["task_facts"], time.perf_counter() - start)
        log.info("%s: %s", ckpt.name, line)
    return summarize_run(run_dir)

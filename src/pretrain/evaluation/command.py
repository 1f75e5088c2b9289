"""`pretrain eval CHECKPOINT|OUTPUT_DIR`: lm-eval on one checkpoint, or learning curves over a run.

    pretrain eval outputs/tiny/final --tasks val_bpb,stdlib_cloze --limit 200
    pretrain eval outputs/tiny                       # every checkpoints/step-*/ and final/ -> evals/summary.*

On one checkpoint this makes the same lm-eval call as
`lm_eval --model hf --model_args pretrained=CKPT --tasks T --include_path RUN/evals/tasks`,
so the numbers are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import marker_summary
from pretrain.core.progress import get_logger
from pretrain.core.runs import recipe_of_run, run_dir_of
from pretrain.evaluation.harness import evaluate_checkpoint, flatten
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
    results = evaluate_checkpoint(
        checkpoint,
        include,
        tasks,
        local,
        limit=args.limit if args.limit is not None else (ev.limit if ev else None),
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
    }


def run_eval_command(args) -> int:
    path = Path(args.checkpoint)
    if not path.exists():
        raise PretrainError(f"{path}: no such checkpoint or output directory")
    if (path / "config.json").exists():
        record = evaluate_one(args, path, run_dir_of(path))
        out = path / "eval_results.json"
        write_json_atomic(out, record)
        print(json.dumps(record["metrics"] if not args.json else record, indent=2))
        return 0
    run_dir = path
    layout = RunLayout(run_dir)
    checkpoints = sorted(layout.checkpoints.glob("step-*")) + (
        [layout.final] if layout.final.exists() else []
    )
    if not checkpoints:
        raise PretrainError(f"{run_dir}: no checkpoints/step-*/ or final/ to evaluate")
    for ckpt in checkpoints:
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
            ),
        )
        log.info("%s: %s", ckpt.name, record["metrics"])
    summary = summarize_run(run_dir)
    print(layout.eval_summary_md.read_text())
    return 0 if summary["rows"] else 1

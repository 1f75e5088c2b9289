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

from pretrain.errors import PretrainError
from pretrain.evaluation.harness import evaluate_checkpoint, flatten
from pretrain.evaluation.report import summarize_run
from pretrain.evaluation.task_yaml import all_task_names, write_task_yamls
from pretrain.progress import get_logger
from pretrain.runs import recipe_of_run, run_dir_of
from pretrain.stages import write_json_atomic

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
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*")) + (
        [run_dir / "final"] if (run_dir / "final").exists() else []
    )
    if not checkpoints:
        raise PretrainError(f"{run_dir}: no checkpoints/step-*/ or final/ to evaluate")
    for ckpt in checkpoints:
        record = evaluate_one(args, ckpt, run_dir)
        state = ckpt / "trainer_state" / "state.json"
        meta = json.loads(state.read_text()) if state.exists() else {}
        marker = ckpt / "STAGE.json"
        if not meta and marker.exists():
            summary = json.loads(marker.read_text()).get("summary", {})
            meta = {"step": summary.get("steps"), "tokens_seen": summary.get("tokens")}
        step = meta.get("step") or 0
        write_json_atomic(
            run_dir / "evals" / f"step-{step:07d}.json",
            {"step": step, "tokens_seen": meta.get("tokens_seen"), "checkpoint": str(ckpt), **record},
        )
        log.info("%s: %s", ckpt.name, record["metrics"])
    summary = summarize_run(run_dir)
    print((run_dir / "evals" / "summary.md").read_text())
    return 0 if summary["rows"] else 1

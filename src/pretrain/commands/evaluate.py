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
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.commands.runs import recipe_of_run, run_dir_of
from pretrain.core.atomic import write_json_atomic
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import marker_summary
from pretrain.core.progress import capture_run_output, get_logger
from pretrain.evaluation.harness import checkpoint_chance_levels, evaluate_checkpoint, flatten
from pretrain.evaluation.metrics import eval_line, task_facts
from pretrain.evaluation.position_loss import (
    POSITION_LOSS,
    PositionLoss,
    default_bounds,
    held_out_windows,
    lm_eval_tasks,
    recipe_bounds,
)
from pretrain.evaluation.records import EVAL_RESULTS, EvalRecord, write_eval_record
from pretrain.evaluation.report import summarize_run
from pretrain.evaluation.task_yaml import all_task_names, write_task_yamls
from pretrain.train.checkpoint import STATE_JSON, TRAINER_STATE

log = get_logger("pretrain.eval")


@dataclass(frozen=True)
class EvalOptions:
    """`pretrain eval`'s options; None: the run's recipe decides (its `eval` section), else lm-eval's default."""

    tasks: str | None = None
    """Comma-separated task names."""
    limit: int | None = None
    batch_size: int | None = None
    num_fewshot: int | None = None
    recipe_file: Path | None = None
    """The recipe for local task paths (default: the run's own copy)."""
    overrides: list[str] = field(default_factory=list)
    as_json: bool = False


def evaluate_one(options: EvalOptions, checkpoint: Path, run_dir: Path) -> dict:
    recipe = recipe_of_run(run_dir, checkpoint, options.recipe_file, options.overrides)
    tasks = (
        [t for t in options.tasks.split(",") if t]
        if options.tasks
        else (all_task_names(recipe) if recipe else [])
    )
    if not tasks:
        raise PretrainError(f"{checkpoint}: no tasks given and no recipe found for the run; pass --tasks")
    ev = recipe.eval if recipe else None
    include, local = write_task_yamls(run_dir, recipe, tasks)
    limit = options.limit if options.limit is not None else (ev.limit if ev else None)
    lm_tasks = lm_eval_tasks(tasks)
    results: dict = {"results": {}}
    if lm_tasks:
        results = evaluate_checkpoint(
            checkpoint,
            include,
            lm_tasks,
            local,
            limit=limit,
            batch_size=options.batch_size or (ev.batch_size if ev else 8),
            num_fewshot=options.num_fewshot
            if options.num_fewshot is not None
            else (ev.num_fewshot or None if ev else None),
            rc_bpb=bool(ev and ev.rc_bpb),
        )
    metrics = flatten(results)
    if POSITION_LOSS in tasks:
        positions = checkpoint_position_loss(checkpoint, run_dir, recipe, options.batch_size)
        metrics.update(positions)
        results.setdefault("results", {})[POSITION_LOSS] = {
            k.rsplit("/", 1)[1]: v for k, v in positions.items()
        }
    return {
        "checkpoint": str(checkpoint),
        "tasks": tasks,
        "metrics": metrics,
        "results": results.get("results", {}),
        "include_path": str(include),
        "task_facts": task_facts(results, checkpoint_chance_levels(include, lm_tasks, local, limit))
        if lm_tasks
        else {},
    }


def checkpoint_position_loss(
    checkpoint: Path, run_dir: Path, recipe, batch_size: int | None
) -> dict[str, float]:
    """The `position_loss` task on a saved checkpoint (its own config, so the RoPE it was trained with)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    if recipe is not None:
        bounds = recipe_bounds(recipe)
    else:  # a checkpoint without its recipe: the quarters of the model's context
        bounds = default_bounds(model.config.max_position_embeddings, model.config.max_position_embeddings)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    windows = held_out_windows(run_dir, tokenizer, bounds[-1])
    return PositionLoss(windows, bounds, batch_size or 4)(model.to(device), device)


def evaluate(checkpoint: Path, options: EvalOptions) -> int:
    """`pretrain eval`: one checkpoint, or every checkpoint of a run folder; returns the exit code.

    lm-eval's own progress bars and warnings go to the run's log file (`RunLayout.log_file`)."""
    path = Path(checkpoint)
    if not path.exists():
        raise PretrainError(f"{path}: no such checkpoint or output directory")
    if (path / "config.json").exists():
        with capture_run_output(RunLayout(run_dir_of(path)).log_file):
            record = evaluate_one(options, path, run_dir_of(path))
        out = path / EVAL_RESULTS
        write_json_atomic(out, record)
        print(json.dumps(record["metrics"] if not options.as_json else record, indent=2))
        return 0
    with capture_run_output(RunLayout(path).log_file):
        summary = _evaluate_run(options, path)
    print(RunLayout(path).eval_summary_md.read_text())
    return 0 if summary["rows"] else 1


def _evaluate_run(options: EvalOptions, run_dir: Path) -> dict:
    """Every checkpoint of a run (and final/), then the run's learning curves; returns the summary."""
    layout = RunLayout(run_dir)
    checkpoints = sorted(layout.checkpoints.glob("step-*")) + (
        [layout.final] if layout.final.exists() else []
    )
    if not checkpoints:
        raise PretrainError(f"{run_dir}: no checkpoints/step-*/ or final/ to evaluate")
    for ckpt in checkpoints:
        start = time.perf_counter()
        record = evaluate_one(options, ckpt, run_dir)
        state = ckpt / TRAINER_STATE / STATE_JSON
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

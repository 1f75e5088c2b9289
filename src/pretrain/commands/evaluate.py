"""`pretrain eval CHECKPOINT|OUTPUT_DIR`: lm-eval on one checkpoint, or learning curves over a run.

    pretrain eval outputs/tiny/final --tasks val_bpb,stdlib_cloze --limit 200
    pretrain eval outputs/tiny                       # every checkpoint -> evals/pretrain-eval/summary.*

On one checkpoint this makes the same lm-eval call as
`lm_eval --model hf --model_args pretrained=CKPT --tasks T --include_path RUN/evals/tasks`,
so the numbers are identical.

What is evaluated is said up front: `--limit N` scores the first N items of each task, `--limit 0` every item,
and without `--limit` the recipe's `eval.limit` (what the in-loop evaluations scored, so the numbers compare)
or every item when there is no recipe. Where results go: `--output-dir D` when given (the records, task files
and log); else a run's checkpoint keeps its record in `CKPT/eval_results.json` with the run's task files and
log, a run folder gets `evals/pretrain-eval/` (never over the in-loop records in `evals/` that the card and
the regression alerts read), and a model folder of no run gets a sibling `<folder>-eval/` (not loose files in
its parent).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.commands.runs import recipe_of_run, run_dir_of
from pretrain.config import Recipe
from pretrain.core.atomic import write_json_atomic
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import marker_summary
from pretrain.core.progress import capture_run_output, get_logger
from pretrain.evaluation.harness import checkpoint_chance_levels, evaluate_checkpoint, flatten, item_scores
from pretrain.evaluation.metrics import eval_line, task_facts
from pretrain.evaluation.position_loss import (
    POSITION_LOSS,
    PositionLoss,
    default_bounds,
    held_out_windows,
    lm_eval_tasks,
    recipe_bounds,
)
from pretrain.evaluation.records import EVAL_RESULTS, EvalRecord, write_record_in
from pretrain.evaluation.report import summarize_run
from pretrain.evaluation.task_yaml import all_task_names, write_task_yamls
from pretrain.train.checkpoint import (
    STATE_JSON,
    STEP_DIR,
    TRAINER_STATE,
    list_checkpoints,
    model_folder_damage,
)

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
    output_dir: Path | None = None
    """Where the records, task files and log go (default: see the module docstring)."""


@dataclass(frozen=True)
class EvalPlace:
    """What `pretrain eval PATH` evaluates against and where its files go."""

    run_dir: Path
    """The run PATH belongs to (its recipe, packed val split), or the model folder itself."""
    recipe: Recipe | None
    work: Path | None
    """Folder for the task files, the log and (run mode) the records; None: the run's own evals/ and log."""

    @property
    def log_file(self) -> Path:
        return RunLayout(self.run_dir).log_file if self.work is None else self.work / "pretrain.log"


def place_of(path: Path, options: EvalOptions) -> EvalPlace:
    run_dir = run_dir_of(path)
    is_checkpoint = (path / "config.json").exists()
    recipe = recipe_of_run(run_dir, path if is_checkpoint else None, options.recipe_file, options.overrides)
    if options.output_dir is not None:
        work = Path(options.output_dir)
    elif not is_checkpoint:
        work = RunLayout(path).command_evals
    elif recipe is None and run_dir_of(path) == path.parent:  # a model folder of no run
        work = path.parent / f"{path.name}-eval"
    else:
        work = None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    return EvalPlace(run_dir, recipe, work)


def limit_of(options: EvalOptions, recipe: Recipe | None) -> tuple[int | None, str]:
    """Items per task (None: all) and the phrase that says so."""
    if options.limit is not None and options.limit < 0:
        raise PretrainError(f"--limit {options.limit}: give a number of items per task, or 0 for every item")
    if options.limit == 0:
        return None, "every item of each task (--limit 0)"
    if options.limit is not None:
        return options.limit, f"the first {options.limit} items of each task (--limit)"
    if recipe is not None and recipe.eval.limit:
        return recipe.eval.limit, (
            f"the first {recipe.eval.limit} items of each task (the recipe's eval.limit, as the in-loop "
            "evaluations; --limit N or --limit 0 for every item)"
        )
    return None, "every item of each task"


def evaluate_one(options: EvalOptions, checkpoint: Path, place: EvalPlace) -> dict:
    recipe, run_dir = place.recipe, place.run_dir
    tasks = (
        [t for t in options.tasks.split(",") if t]
        if options.tasks
        else (all_task_names(recipe) if recipe else [])
    )
    if not tasks:
        raise PretrainError(f"{checkpoint}: no tasks given and no recipe found for the run; pass --tasks")
    ev = recipe.eval if recipe else None
    include, local = write_task_yamls(run_dir, recipe, tasks, into=place.work)
    limit, _ = limit_of(options, recipe)
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
        "limit": limit,
        "items": item_scores(results),
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

    lm-eval's own progress bars and warnings go to the log file (`EvalPlace.log_file`)."""
    path = Path(checkpoint)
    if not path.exists():
        raise PretrainError(f"{path}: no such checkpoint or output directory")
    place = place_of(path, options)
    _, said = limit_of(options, place.recipe)
    log.info("evaluating %s on %s", path, said)
    if (path / "config.json").exists():
        problems = model_folder_damage(path)
        if problems:  # a truncated file was a safetensors traceback from from_pretrained
            raise PretrainError(
                f"{path}: damaged, not evaluated: {'; '.join(problems[:3])}; evaluate another checkpoint (a "
                "damaged final/ is rebuilt by `pretrain run`)"
            )
        with capture_run_output(place.log_file):
            record = evaluate_one(options, path, place)
        if place.work is not None:
            write_json_atomic(place.work / EVAL_RESULTS, record)
        if (path / "config.json").exists():  # not when training pruned it meanwhile: no folder re-made
            write_json_atomic(path / EVAL_RESULTS, record)
        print(json.dumps(record, indent=2) if options.as_json else results_table(record))
        return 0
    with capture_run_output(place.log_file):
        summary = _evaluate_run(options, path, place)
    if not summary["rows"]:  # every checkpoint was pruned under it, or the run has none yet
        raise PretrainError(
            f"{path}: no checkpoint left to evaluate (none yet, or training's keep_last removed each one while "
            "it was being evaluated); evaluate final/ when training ends, or a checkpoint it keeps"
        )
    print((place.work / RunLayout(path).eval_summary_md.name).read_text())
    return 0


def results_table(record: dict) -> str:
    """One line per task and metric: the value, its standard error and the number of items scored."""
    lines = [f"{'task':<24} {'metric':<16} {'value':>12} {'± stderr':>10} {'items':>6}"]
    for task, values in sorted(record["results"].items()):
        items = max((len(v) for v in record.get("items", {}).get(task, {}).values()), default=None)
        for key, value in values.items():
            name = key.split(",")[0]
            if f"eval/{task}/{name}" not in record["metrics"]:
                continue
            stderr = values.get(key.replace(name, f"{name}_stderr", 1))
            spread = f"{stderr:.4f}" if isinstance(stderr, float) else ""
            shown = f"{value:.4f}"
            lines.append(f"{task:<24} {name:<16} {shown:>12} {spread:>10} {items or '':>6}")
    return "\n".join(lines)


def step_of(checkpoint: Path) -> dict:
    """{"step", "tokens_seen"} of a checkpoint: its trainer state, else its marker, else its folder name."""
    state = checkpoint / TRAINER_STATE / STATE_JSON
    meta = json.loads(state.read_text()) if state.exists() else {}
    if not meta and (summary := marker_summary(checkpoint)):
        meta = {"step": summary.get("steps"), "tokens_seen": summary.get("tokens")}
    if meta.get("step") is None and (named := STEP_DIR.match(checkpoint.name)):
        meta["step"] = int(named.group(1))
    return meta


def _evaluate_run(options: EvalOptions, run_dir: Path, place: EvalPlace) -> dict:
    """Every complete checkpoint of a run (and final/), then their learning curves; returns the summary.

    A checkpoint the running training prunes (`keep_last`) while it is evaluated is skipped with one line."""
    layout = RunLayout(run_dir)
    checkpoints = list_checkpoints(layout.checkpoints) + ([layout.final] if layout.final.exists() else [])
    if not checkpoints:
        raise PretrainError(f"{run_dir}: no complete checkpoints/step-*/ or final/ to evaluate")
    for ckpt in checkpoints:
        start = time.perf_counter()
        problems = model_folder_damage(ckpt) if ckpt.exists() else []
        if problems:
            log.warning("%s: damaged (%s); skipped", ckpt, "; ".join(problems[:3]))
            continue
        try:
            meta = step_of(ckpt)
            record = evaluate_one(options, ckpt, place)
        except (OSError, ValueError, PretrainError):
            if ckpt.exists():
                raise
            log.warning("%s: removed while being evaluated (keep_last pruned it); skipped", ckpt)
            continue
        step = meta.get("step")
        if step is None:
            log.warning("%s: no step recorded (no trainer state or marker); skipped", ckpt)
            continue
        write_record_in(
            place.work,
            EvalRecord(
                step=step,
                tokens_seen=meta.get("tokens_seen"),
                checkpoint=str(ckpt),
                tasks=record["tasks"],
                metrics=record["metrics"],
                results=record["results"],
                include_path=record["include_path"],
                task_facts=record["task_facts"],
                items=record["items"],
            ),
        )
        line = eval_line(step, record["metrics"], record["task_facts"], time.perf_counter() - start)
        log.info("%s: %s", ckpt.name, line)
    return summarize_run(run_dir, place.work)

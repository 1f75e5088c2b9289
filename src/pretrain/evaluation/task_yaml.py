"""Write lm-eval task YAMLs for a run: built-in tasks and the recipe's local benchmark files.

lm-eval reads local data through `dataset_path: json` + `dataset_kwargs.data_files`; since those paths
differ per run, the YAMLs are generated into `<run>/evals/tasks/` (with their data under
`<run>/evals/data/`). The same folder is what the `lm_eval` CLI takes as `--include_path`, which is how
`pretrain eval` and `lm_eval` give identical numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pretrain.core.errors import StageError
from pretrain.core.layout import RunLayout
from pretrain.evaluation.benchmarks import read_items
from pretrain.evaluation.builtin_tasks import BUILTIN_TASKS, CLOZE_VERSION, write_cloze_file
from pretrain.evaluation.position_loss import POSITION_LOSS

MC = {
    "output_type": "multiple_choice",
    "metric_list": [
        {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
    ],
}
ROLLING = {
    "output_type": "loglikelihood_rolling",
    "doc_to_text": "",
    "metric_list": [
        {"metric": "word_perplexity"},
        {"metric": "byte_perplexity"},
        {"metric": "bits_per_byte"},
    ],
}

FORMATS = {
    "mc_query_choices": {
        **MC,
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
    },
    # lm-eval joins a loglikelihood request's context and target with nothing between: the word's space goes
    # into the target (as lm-eval's own lambada task does), unless the file already put whitespace on one side
    "lambada_context": {
        "output_type": "loglikelihood",
        "doc_to_text": "{{context}}",
        "doc_to_target": "{{continuation if continuation[:1].isspace() or context[-1:].isspace() "
        "else ' ' ~ continuation}}",
        "metric_list": [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
    },
    # partial scoring (as lm-eval's winogrande): the options are contexts, the continuation is shared
    "winogrande_partial": {
        **MC,
        "doc_to_text": "{{gold}}",
        "doc_to_choice": "{{context_options}}",
        "doc_to_target": "{{continuation}}",
    },
    "blimp_pairs": {
        **MC,
        "doc_to_text": "",
        "doc_to_choice": "{{[sentence_good, sentence_bad]}}",
        "doc_to_target": 0,
    },
    "text_rolling": {**ROLLING, "doc_to_target": "{{text}}"},
}


def _task(name: str, data_file: Path, fmt: str) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        **FORMATS[fmt],
        "metadata": {"version": 1.0},
    }


def write_task_yamls(
    run_dir: Path, recipe, task_names: list[str], into: Path | None = None
) -> tuple[Path, list[str]]:
    """Generate YAMLs for the built-in and local tasks among `task_names`; return (include dir, local names).

    They go into the run's `evals/` (`RunLayout.eval_task_yamls`), or into `into`'s `tasks/` and `data/` when
    given (`pretrain eval --output-dir`, or a model folder that belongs to no run)."""
    if into is None:
        tasks_dir, data_dir = task_dir(run_dir), RunLayout(run_dir).eval_task_data
    else:
        tasks_dir, data_dir = Path(into) / "tasks", Path(into) / "data"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    local = []
    for name in task_names:
        if name == POSITION_LOSS:
            continue  # not an lm-eval task (evaluation/position_loss.py)
        if name == "val_bpb":
            val = RunLayout(run_dir).tokens / "val_docs.jsonl"
            if not val.exists():
                raise StageError(
                    f"{val}: missing; val_bpb needs the run's packed val split (`pretrain pack`)"
                )
            spec = _task("val_bpb", val, "text_rolling")
        elif name == "stdlib_cloze":
            seed = recipe.seed if recipe else 0
            spec = _task(
                "stdlib_cloze",
                write_cloze_file(data_dir / f"stdlib_cloze-{CLOZE_VERSION}-seed{seed}.jsonl", seed),
                "mc_query_choices",
            )
            spec["target_delimiter"] = "\n"
        else:
            task = next((t for t in (recipe.eval.local_tasks if recipe else []) if t.name == name), None)
            if task is None:
                continue  # a Hub task: passed to lm-eval by name
            items_file = data_dir / f"{name}.jsonl"
            data_dir.mkdir(parents=True, exist_ok=True)
            # validated copy in the original field layout (read_items raises a clear error on bad files)
            read_items(recipe.resolve_path(task.path), task.format, task.limit)
            items_file.write_text(_limited(recipe.resolve_path(task.path), task.limit), encoding="utf-8")
            spec = _task(name, items_file, task.format)
        (tasks_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        local.append(name)
    return tasks_dir, local


def task_dir(run_dir: Path) -> Path:
    """Where a run's generated task YAMLs live (lm-eval's `--include_path`)."""
    return RunLayout(run_dir).eval_task_yamls


def existing_task_yamls(run_dir: Path, task_names: list[str]) -> tuple[Path, list[str]]:
    """What `write_task_yamls` returned, read back from disk (for ranks that did not write)."""
    tasks_dir = task_dir(run_dir)
    return tasks_dir, [n for n in task_names if (tasks_dir / f"{n}.yaml").exists()]


def _limited(path: Path, limit: int | None) -> str:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return "\n".join(json.dumps(json.loads(ln)) for ln in lines[: limit or None]) + "\n"


def all_task_names(recipe) -> list[str]:
    return list(dict.fromkeys([*recipe.eval.tasks, *(t.name for t in recipe.eval.local_tasks)]))


__all__ = ["write_task_yamls", "all_task_names", "BUILTIN_TASKS"]

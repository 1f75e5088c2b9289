"""Which evaluation numbers we show, and what a reader needs beside them (dataset id, chance level).

One home for the choices every view of the evaluations makes — the console line of each evaluation, the
summary table, the learning-curve plots and the model card's `model-index`:

- lm-eval reports a rolling-loglikelihood task (`val_bpb`, wikitext) three ways: `word_perplexity`,
  `byte_perplexity` and `bits_per_byte` are transforms of one total log-likelihood. Bits per byte is the one
  comparable across tokenizers; the other two are left out of every view (the eval records keep lm-eval's
  full `results`).
- Accuracies are read against chance: `task_facts` records each multiple-choice task's chance level (the mean
  of 1 / number of choices over the documents evaluated), drawn as a dashed line on its plots.
- Perplexity-like metrics span orders of magnitude: their plots use a log axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

DERIVED = frozenset({"word_perplexity", "byte_perplexity"})
"""Metrics left out of every view: 2 ** bits_per_byte and 2 ** (bits per byte x bytes per word)."""
ACCURACY = frozenset({"acc", "acc_norm", "acc_mutual_info", "exact_match"})
PERPLEXITY = frozenset({"perplexity", "word_perplexity", "byte_perplexity"})
UNITS = {"bits_per_byte": "bits/byte", "rc_bpb": "bits/byte"}
LOCAL_DATASET_LOADERS = frozenset({"json", "csv", "parquet", "text", "arrow"})
"""`dataset_path`s of tasks that read local files (ours: built-in and `eval.local_tasks`): no Hub id."""


def bits_per_byte(loss: float, bytes_per_token: float | None) -> float | None:
    """A mean loss in nats per token as bits per byte of the text it was measured on (None when the text's
    bytes per token are unknown): the one loss figure comparable across tokenizers."""
    return loss / math.log(2) / bytes_per_token if bytes_per_token else None


def split_key(key: str) -> tuple[str, str]:
    """`eval/<task>/<metric>` -> (task, metric)."""
    _, task, metric = key.split("/", 2)
    return task, metric


def is_reported(key: str) -> bool:
    """False for the metrics no view shows (`DERIVED`)."""
    return split_key(key)[1] not in DERIVED


def reported(keys: Iterable[str]) -> list[str]:
    """The `eval/<task>/<metric>` keys every view shows, in their given order."""
    return [k for k in keys if is_reported(k)]


def is_accuracy(metric: str) -> bool:
    return metric in ACCURACY


def is_perplexity(metric: str) -> bool:
    return metric in PERPLEXITY


def chance_levels(task_dict: Mapping, limit: int | None) -> dict[str, float]:
    """{task: chance accuracy} for the multiple-choice tasks of an lm-eval task dict (groups walked): the
    mean of 1 / len(choices) over the first `limit` documents, which are the ones lm-eval evaluates."""
    chance: dict[str, float] = {}
    for name, task in leaf_task_items(task_dict):
        if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
            continue
        docs = task.eval_docs
        n = len(docs) if not limit else min(len(docs), int(limit))
        sizes = [len(task.doc_to_choice(docs[i])) for i in range(n)]
        if sizes and all(sizes):
            chance[name] = round(sum(1 / s for s in sizes) / len(sizes), 4)
    return chance


def leaf_task_items(task_dict: Mapping) -> Iterable[tuple[str, object]]:
    """(name, task object) of each task of an lm-eval task dict, groups walked."""
    for key, value in task_dict.items():
        if isinstance(value, Mapping):  # a group: {group: {task: Task}}
            yield from leaf_task_items(value)
        elif value is not None:
            name = getattr(getattr(value, "config", None), "task", None) or str(key)
            yield name, value


def task_facts(results: dict, chance: Mapping[str, float]) -> dict[str, dict]:
    """{task: {"dataset", "config", "split", "num_fewshot", "chance"}} from lm-eval's results (`configs`,
    `n-shot`) and the chance levels. `dataset` is the Hub dataset id the task reads (lm-eval's
    `dataset_path`, e.g. `Rowan/hellaswag`), None for a task on local files; unset values are left out."""
    facts: dict[str, dict] = {}
    configs, shots = results.get("configs", {}), results.get("n-shot", {})
    for task in results.get("results", {}):
        cfg = configs.get(task, {})
        path = cfg.get("dataset_path")
        fact = {
            "dataset": None if not path or path in LOCAL_DATASET_LOADERS else path,
            "config": cfg.get("dataset_name"),
            "split": cfg.get("test_split") or cfg.get("validation_split"),
            "num_fewshot": shots.get(task, cfg.get("num_fewshot")),
            "chance": chance.get(task),
        }
        facts[task] = {k: v for k, v in fact.items() if v is not None}
    return facts


def format_value(metric: str, value: float) -> str:
    unit = UNITS.get(metric)
    if unit:
        return f"{value:.4f} {unit}"
    if is_perplexity(metric):
        return f"{metric} {value:.4g}"
    return f"{metric} {value:.3f}"


def eval_line(step: int, metrics: Mapping[str, float], facts: Mapping[str, dict], seconds: float) -> str:
    """One console line per evaluation: `eval at step 40: stdlib_cloze acc 0.420, acc_norm 0.470 (chance
    0.250); val_bpb 2.9530 bits/byte (3.1 s)`."""
    by_task: dict[str, list[str]] = {}
    for key in reported(metrics):
        task, metric = split_key(key)
        by_task.setdefault(task, []).append(format_value(metric, metrics[key]))
    parts = []
    for task, values in by_task.items():
        chance = facts.get(task, {}).get("chance")
        parts.append(f"{task} {', '.join(values)}" + (f" (chance {chance:.3f})" if chance else ""))
    return f"eval at step {step}: " + ("; ".join(parts) or "no metrics") + f" ({seconds:.1f} s)"

"""Readers of local benchmark files — one per format, shared by lm-eval task building and decontamination.

Formats (`eval.local_tasks[].format`), as in ../shared/data/README.md:
- `mc_query_choices`: `{"query", "choices": [...], "gold": int}` (ARC / OpenBookQA / COPA, MosaicML layout)
- `lambada_context`: `{"context", "continuation"}` (last-word cloze)
- `winogrande_partial`: `{"context_options": [2], "continuation", "gold"}` (partial scoring)
- `blimp_pairs`: `{"sentence_good", "sentence_bad"}` (minimal pairs)
- `text_rolling`: `{"text"}` (perplexity / bits-per-byte)
Every item is normalised to `{"context", "choices", "gold"}` (`choices` empty for text_rolling).
"""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.core.errors import DataError
from pretrain.evaluation.builtin_tasks import BUILTIN_TASKS, stdlib_cloze_items

REQUIRED = {
    "mc_query_choices": ("query", "choices", "gold"),
    "lambada_context": ("context", "continuation"),
    "winogrande_partial": ("context_options", "continuation", "gold"),
    "blimp_pairs": ("sentence_good", "sentence_bad"),
    "text_rolling": ("text",),
}


def _normalise(fmt: str, rec: dict) -> dict:
    if fmt == "mc_query_choices":
        return {"context": rec["query"], "choices": list(rec["choices"]), "gold": int(rec["gold"])}
    if fmt == "lambada_context":
        return {"context": rec["context"], "choices": [rec["continuation"]], "gold": 0}
    if fmt == "winogrande_partial":
        return {
            "context": list(rec["context_options"]),
            "choices": [rec["continuation"]],
            "gold": int(rec["gold"]),
        }
    if fmt == "blimp_pairs":
        return {"context": "", "choices": [rec["sentence_good"], rec["sentence_bad"]], "gold": 0}
    return {"context": rec["text"], "choices": [], "gold": 0}


def read_items(path: Path, fmt: str, limit: int | None = None) -> list[dict]:
    """Read and validate a local benchmark file; DataError names the file, line and missing field."""
    items = []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read benchmark file ({exc})") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise DataError(
                    f"{path}:{lineno}: not valid JSON (expected one {fmt} record per line)"
                ) from None
            missing = [k for k in REQUIRED[fmt] if not isinstance(rec, dict) or k not in rec]
            if missing:
                raise DataError(f"{path}:{lineno}: {fmt} record lacks {', '.join(missing)}")
            item = _normalise(fmt, rec)
            if fmt in ("mc_query_choices", "winogrande_partial"):
                n = len(item["context"]) if fmt == "winogrande_partial" else len(item["choices"])
                if not 0 <= item["gold"] < n:
                    raise DataError(f"{path}:{lineno}: gold={item['gold']} is out of range for {n} options")
            items.append(item)
            if limit and len(items) >= limit:
                break
    if not items:
        raise DataError(f"{path}: benchmark file has no items")
    return items


def load_benchmark(task, recipe) -> list[dict]:
    """Items of a recipe's `eval.local_tasks[]` entry."""
    return read_items(recipe.resolve_path(task.path), task.format, task.limit)


def item_texts(item: dict) -> list[str]:
    ctx = item["context"]
    contexts = ctx if isinstance(ctx, list) else [ctx]
    if not item["choices"]:
        return [c for c in contexts if c]
    return [f"{c} {choice}".strip() for c in contexts for choice in item["choices"]]


def decontamination_texts(recipe) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(task name -> texts of its items, task name -> why it could not be checked).

    Local tasks and the built-in cloze are read from their files; lm-eval task names (hellaswag,
    arc_easy, ...) through lm-eval's own task definitions and their datasets — from the Hub, or from
    the local `datasets` cache when offline. A task whose data cannot be loaded is reported, not fatal.
    `val_bpb` is the run's own val split (disjoint from train by construction).
    """

    texts = {
        task.name: [t for item in load_benchmark(task, recipe) for t in item_texts(item)]
        for task in recipe.eval.local_tasks
    }
    if "stdlib_cloze" in recipe.eval.tasks:
        items = [_normalise("mc_query_choices", it) for it in stdlib_cloze_items(recipe.seed)]
        texts["stdlib_cloze"] = [f"{it['context']}\n{it['choices'][it['gold']]}" for it in items]
    named = [t for t in recipe.eval.tasks if t not in BUILTIN_TASKS and t not in texts]
    unchecked: dict[str, str] = {}
    if named and recipe.data.decontaminate.lm_eval_tasks:
        found, unchecked = lm_eval_task_texts(named)
        texts.update(found)
    elif named:
        unchecked = {t: "data.decontaminate.lm_eval_tasks is false" for t in named}
    return texts, unchecked


def lm_eval_task_texts(names: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Texts of lm-eval tasks' evaluation documents: each prompt, and the prompt joined with each answer."""
    import logging

    from lm_eval.tasks import TaskManager, get_task_dict

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager()  # indexing lm-eval's bundled tasks takes ~13 s
    texts, unchecked = {}, {}
    for name in names:
        try:
            tasks = list(_leaf_tasks(get_task_dict([name], manager)))
            texts[name] = [t for task in tasks for doc in task.eval_docs for t in _doc_texts(task, doc)]
        except Exception as exc:  # unknown name, no network and no cache, a dataset script...
            unchecked[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return texts, unchecked


def _leaf_tasks(task_dict: dict):
    for value in task_dict.values():
        if isinstance(value, dict):  # a group (e.g. mmlu) holds its subtasks
            yield from _leaf_tasks(value)
        else:
            yield value


def _doc_texts(task, doc) -> list[str]:
    prompt = task.doc_to_text(doc)
    prompt = prompt if isinstance(prompt, str) else ""
    if task.OUTPUT_TYPE == "multiple_choice":
        answers = task.doc_to_choice(doc)
        answers = answers if isinstance(answers, list) else []
    else:
        target = task.doc_to_target(doc)
        answers = target if isinstance(target, list) else [target]
    answers = [a for a in answers if isinstance(a, str) and a.strip()]
    joined = [f"{prompt}{task.config.target_delimiter}{a}".strip() for a in answers]
    return [t for t in [prompt.strip(), *joined] if t]

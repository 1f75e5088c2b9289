"""Benchmark bits per byte ("rc bpb", OLMES / olmix): how many bits the model spends per UTF-8 byte of a task's
gold answer given its context.

Accuracy of a small model sits at chance and says nothing about which of two small models is better; the
log-likelihood of the right answer keeps moving. `add_rc_bpb` gives any multiple-choice or cloze lm-eval task a
metric `rc_bpb` computed from the requests the task already makes (no extra forward pass):

- multiple choice (ARC, OpenBookQA, COPA, ...): the gold choice's continuation `<delimiter><choice>` given the
  query;
- partial scoring (WinoGrande: the options are contexts): the shared continuation given the gold context;
- cloze (`loglikelihood`, LAMBADA): the target given the context.

Aggregated as a ratio of sums over the documents evaluated: −Σ log p(gold continuation) / (ln 2 · Σ bytes of the
gold continuations) — lm-eval's own `bits_per_byte` aggregation. Lower is better.
"""

from __future__ import annotations

import math

RC_BPB = "rc_bpb"
SCORED_TYPES = frozenset({"multiple_choice", "loglikelihood"})


def summed_bits_per_byte(items: list[tuple[float, int]]) -> float:
    """(log-likelihood in nats, bytes) pairs -> bits per byte of them all (a ratio of sums)."""
    loglikelihood = sum(ll for ll, _ in items)
    nbytes = sum(n for _, n in items)
    return -loglikelihood / math.log(2) / max(nbytes, 1)


def _gold_index(gold, choices: list[str]) -> int | None:
    if isinstance(gold, list):
        gold = gold[0] if gold else None
    if isinstance(gold, str):
        return choices.index(gold) if gold in choices else None
    return gold if isinstance(gold, int) and 0 <= gold < len(choices) else None


def gold_loglikelihood(task, doc: dict, results: list) -> tuple[float, int] | None:
    """(log-likelihood, UTF-8 bytes) of `doc`'s gold continuation from the task's own request results; None
    where the document names no valid gold answer."""
    if task.OUTPUT_TYPE == "loglikelihood":
        ll, _ = results[0]
        return float(ll), len(str(task.doc_to_target(doc)).encode("utf-8"))
    delimiter = task.config.target_delimiter
    if task.multiple_input:  # the options are contexts; the continuation is the same for all
        options = task.doc_to_choice(doc)
        gold = _gold_index(task.doc_to_text(doc), options)
        continuation = f"{delimiter}{task.doc_to_target(doc)}"
    else:
        options = task.doc_to_choice(doc)
        gold = _gold_index(task.doc_to_target(doc), options)
        continuation = f"{delimiter}{options[gold]}" if gold is not None else ""
    if gold is None:
        return None
    ll, _ = results[gold]
    return float(ll), len(continuation.encode("utf-8"))


def add_rc_bpb(task) -> bool:
    """Give `task` (an lm-eval ConfigurableTask) the `rc_bpb` metric; False for a task that has no gold
    continuation to score (generation, rolling perplexity) or already has it."""
    if getattr(task, "OUTPUT_TYPE", None) not in SCORED_TYPES or RC_BPB in task._metric_fn_list:
        return False
    process = task.process_results

    def process_results(doc, results):
        out = dict(process(doc, results))
        scored = gold_loglikelihood(task, doc, results)
        if scored is not None:
            out[RC_BPB] = scored
        return out

    task.process_results = process_results
    task._metric_fn_list[RC_BPB] = lambda item: item
    task._aggregation_list[RC_BPB] = summed_bits_per_byte
    task._higher_is_better[RC_BPB] = False
    return True


def add_rc_bpb_to_all(tasks) -> list[str]:
    """`add_rc_bpb` on each of `tasks` (task objects); the names of those that got it."""
    return [task.config.task for task in tasks if add_rc_bpb(task)]

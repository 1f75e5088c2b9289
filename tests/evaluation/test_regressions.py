"""Regressions between checkpoints: a paired test on the same items at a stated false-alarm rate."""

from __future__ import annotations

import math

from pretrain.commands.card import forecast_and_regressions
from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import EvalRecord, write_eval_record
from pretrain.evaluation.regressions import (
    FALSE_ALARM_RATE,
    find_regressions,
    lower_is_better,
    mcnemar_worse,
    stderr_of,
)


def record(step: int, acc: float, acc_stderr, bpb: float) -> EvalRecord:
    return EvalRecord(
        step=step,
        tokens_seen=step * 100,
        tasks=["cloze", "val_bpb"],
        metrics={"eval/cloze/acc": acc, "eval/val_bpb/bits_per_byte": bpb},
        results={
            "cloze": {"acc,none": acc, "acc_stderr,none": acc_stderr},
            "val_bpb": {"bits_per_byte,none": bpb, "bits_per_byte_stderr,none": "N/A"},
        },
    )


def test_without_per_item_scores_both_standard_errors_count():
    """Older records (no items): a two-sample z-test; 0.57 -> 0.45 at stderr 0.05 each is z=1.70, p=0.045:
    within chance at 1%, which the one-stderr rule called a regression."""
    records = [record(10, 0.60, 0.05, 3.0), record(20, 0.57, 0.05, 2.9), record(30, 0.45, 0.05, 3.5)]
    assert find_regressions(records) == []
    (found,) = find_regressions([*records, record(40, 0.20, 0.05, 3.5)])
    assert (found.metric, found.step_before, found.step, found.before, found.after) == (
        "eval/cloze/acc",
        30,
        40,
        0.45,
        0.20,
    )
    assert found.p_value < FALSE_ALARM_RATE and "two-sample z-test" in found.describe()
    # bits per byte rose a lot at step 30, but lm-eval gives it no stderr ("N/A") and no items: not judged
    assert stderr_of(records[2], "eval/val_bpb/bits_per_byte") is None


def with_items(step: int, scores: list[float]) -> EvalRecord:
    rec = record(step, sum(scores) / len(scores), 0.03, 3.0)
    rec.items["cloze"] = {"acc": scores}
    return rec


def test_the_same_items_are_paired_mcnemar():
    """Case 9 of issue #31: the shipped tiny run's alert pattern — 0.90 -> 0.85 on the same 80 items, worse by
    more than one standard error (0.04) — is within chance when the items are paired (8 lost, 4 gained)."""
    before = [1.0] * 72 + [0.0] * 8
    after = before.copy()
    for i in range(8):
        after[i] = 0.0  # right -> wrong
    for i in range(72, 76):
        after[i] = 1.0  # wrong -> right
    assert sum(after) / 80 == 0.85
    assert find_regressions([with_items(10, before), with_items(20, after)]) == []
    p, _ = mcnemar_worse(before, after)
    assert abs(p - sum(math.comb(12, k) for k in range(8, 13)) / 2**12) < 1e-12  # 0.194
    # the same 8 lost with none gained is a regression: p = 2**-8
    lost = before.copy()
    for i in range(8):
        lost[i] = 0.0
    (found,) = find_regressions([with_items(10, before), with_items(20, lost)])
    assert found.p_value == 2**-8 and "8 right->wrong, 0 wrong->right" in found.describe()


def test_non_binary_item_scores_use_a_paired_t_test():
    base = [0.5 + 0.01 * i for i in range(40)]
    noisy = [v + (0.02 if i % 2 else -0.02) for i, v in enumerate(base)]
    assert find_regressions([with_items(10, base), with_items(20, noisy)]) == []
    worse = [v - 0.05 + (0.01 if i % 2 else -0.01) for i, v in enumerate(base)]
    (found,) = find_regressions([with_items(10, base), with_items(20, worse)])
    assert "paired t-test on 40 items" in found.describe()


def test_lower_is_better_metrics_regress_when_they_rise():
    assert lower_is_better("eval/wikitext/word_perplexity") and not lower_is_better("eval/hellaswag/acc_norm")
    up = record(20, 0.6, 0.01, 3.0)
    up.results["val_bpb"]["bits_per_byte_stderr,none"] = 0.01
    before = record(10, 0.6, 0.01, 2.9)
    before.results["val_bpb"]["bits_per_byte_stderr,none"] = 0.01
    (found,) = find_regressions([up, before])  # order of the records does not matter
    assert found.metric == "eval/val_bpb/bits_per_byte" and found.after == 3.0


def test_card_context_marks_regressions(tmp_path):
    layout = RunLayout(tmp_path)
    for r in (record(10, 0.60, 0.02, 3.0), record(20, 0.50, 0.02, 2.9)):  # z = 3.5
        write_eval_record(layout, r)
    context = forecast_and_regressions(layout, [], 1000, 0)
    assert context["forecast"] is None  # no ladder fit
    assert list(context["regressions"]) == ["20:eval/cloze/acc"]


def test_without_lm_evals_stderr_the_items_give_it():
    """In-loop evaluations run lm-eval without its bootstrap, so their records carry no stderr: `pretrain watch`
    showed an empty error bar. The standard error of the mean of the per-document scores stands in."""
    scores = [1.0] * 60 + [0.0] * 20
    rec = with_items(10, scores)
    rec.results["cloze"]["acc_stderr,none"] = "N/A"
    p = 0.75
    assert math.isclose(stderr_of(rec, "eval/cloze/acc"), math.sqrt(p * (1 - p) * 80 / 79) / math.sqrt(80))
    rec.results["cloze"]["acc_stderr,none"] = 0.05  # lm-eval's own, when it has one, comes first
    assert stderr_of(rec, "eval/cloze/acc") == 0.05

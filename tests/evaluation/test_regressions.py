"""Regressions between checkpoints: a score worse than the previous evaluation by more than its stderr."""

from __future__ import annotations

from pretrain.commands.card import forecast_and_regressions
from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import EvalRecord, write_eval_record
from pretrain.evaluation.regressions import find_regressions, lower_is_better, stderr_of


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


def test_a_fall_beyond_the_stderr_is_a_regression_and_within_it_is_not():
    records = [record(10, 0.60, 0.05, 3.0), record(20, 0.57, 0.05, 2.9), record(30, 0.45, 0.05, 3.5)]
    (found,) = find_regressions(records)
    assert (found.metric, found.step_before, found.step, found.before, found.after) == (
        "eval/cloze/acc",
        20,
        30,
        0.57,
        0.45,
    )
    assert "worse by more than its standard error 0.0500" in found.describe()
    # bits per byte rose a lot at step 30, but lm-eval gives it no stderr ("N/A"): not judged
    assert stderr_of(records[2], "eval/val_bpb/bits_per_byte") is None


def test_lower_is_better_metrics_regress_when_they_rise():
    assert lower_is_better("eval/wikitext/word_perplexity") and not lower_is_better("eval/hellaswag/acc_norm")
    up = record(20, 0.6, 0.01, 3.0)
    up.results["val_bpb"]["bits_per_byte_stderr,none"] = 0.01
    before = record(10, 0.6, 0.01, 2.9)
    (found,) = find_regressions([up, before])  # order of the records does not matter
    assert found.metric == "eval/val_bpb/bits_per_byte" and found.after == 3.0


def test_card_context_marks_regressions(tmp_path):
    layout = RunLayout(tmp_path)
    for r in (record(10, 0.60, 0.02, 3.0), record(20, 0.50, 0.02, 2.9)):
        write_eval_record(layout, r)
    context = forecast_and_regressions(layout, [], 1000, 0)
    assert context["forecast"] is None  # no ladder fit
    assert list(context["regressions"]) == ["20:eval/cloze/acc"]

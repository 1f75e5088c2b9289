"""Regressions between checkpoints: a benchmark score that got worse by more than chance would make it.

Each evaluation of a run scores the same documents (the first `eval.limit` of each task), so two evaluations are
compared item by item — a paired test — not by their standard errors: the records keep each document's score
(records.py `items`). From one evaluated step to the next, a metric regresses when the test rejects "no worse"
at `FALSE_ALARM_RATE`, one-sided:
- right/wrong scores (acc, acc_norm, exact_match): McNemar's exact test — of the documents whose score changed,
  how likely at least this many went from right to wrong if either direction were a coin flip;
- other per-document scores: a paired t-test on the differences;
- records without per-document scores (older runs) fall back to a two-sample z-test on lm-eval's standard
  errors of both evaluations. Metrics with neither (bits per byte: "N/A") are not judged.

The rate is per metric and pair of consecutive evaluations: the tiny recipe's 10 evaluations of one metric
raise a false alarm in at most 9% of runs whose model did not get worse (it used to fire at one standard error,
about 16% per comparison, two false alarms in the shipped tiny run).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from pretrain.evaluation.records import EvalRecord

# metric names where lower is better; every other metric (acc, acc_norm, exact_match, f1, ...) is higher-better
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "bpb", "loss")
FALSE_ALARM_RATE = 0.01
"""Probability that a metric which did not get worse is reported as a regression, per comparison."""


@dataclass(frozen=True)
class Regression:
    metric: str  # the flat `eval/<task>/<metric>` name of the learning curves
    step_before: int
    step: int
    before: float
    after: float
    p_value: float
    test: str  # how it was judged, with its counts ("McNemar exact: 9 right->wrong, 1 wrong->right")

    def describe(self) -> str:
        return (
            f"{self.metric.removeprefix('eval/')} went from {self.before:.4f} (step {self.step_before}) to "
            f"{self.after:.4f} (step {self.step}): worse at p={self.p_value:.2g} < {FALSE_ALARM_RATE} "
            f"({self.test})"
        )


def lower_is_better(metric: str) -> bool:
    return any(word in metric.rsplit("/", 1)[-1] for word in LOWER_IS_BETTER)


def stderr_of(record: EvalRecord, metric: str) -> float | None:
    """The standard error of a flat `eval/<task>/<metric>` value in `record`: lm-eval's, else the standard error
    of the mean of the record's per-document scores (in-loop evaluations run lm-eval without its bootstrap,
    which leaves every stderr empty); None when neither is there."""
    _, task, name = metric.split("/", 2)
    for key, value in record.results.get(task, {}).items():
        if (
            key.split(",")[0] == f"{name}_stderr"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            return float(value)
    items = items_of(record, metric)
    if items and len(items) > 1:
        return statistics.stdev(items) / math.sqrt(len(items))
    return None


def items_of(record: EvalRecord, metric: str) -> list[float] | None:
    """Each document's score behind a flat `eval/<task>/<metric>` value, None when the record has none."""
    _, task, name = metric.split("/", 2)
    return record.items.get(task, {}).get(name.split(",")[0])


def mcnemar_worse(before: list[float], after: list[float]) -> tuple[float, str]:
    """One-sided exact McNemar: p of at least this many right->wrong among the changed documents."""
    lost = sum(1 for b, a in zip(before, after) if b > a)
    gained = sum(1 for b, a in zip(before, after) if a > b)
    changed = lost + gained
    p = sum(math.comb(changed, k) for k in range(lost, changed + 1)) / 2**changed if changed else 1.0
    return p, f"McNemar exact on {len(after)} items: {lost} right->wrong, {gained} wrong->right"


def paired_t_worse(worse_by: list[float]) -> tuple[float, str]:
    """One-sided paired t-test that the mean per-document change is a worsening."""
    from scipy import stats  # scipy.stats costs ~0.5 s to import: only when a run has such scores

    if len(worse_by) < 2 or max(worse_by) == min(worse_by):
        p = 0.0 if worse_by and min(worse_by) > 0 else 1.0
    else:
        p = float(stats.ttest_1samp(worse_by, 0.0, alternative="greater").pvalue)
    return p, f"paired t-test on {len(worse_by)} items"


def two_sample_worse(worse: float, stderr_before: float | None, stderr_after: float) -> tuple[float, str]:
    """Without per-document scores: a z-test of the change against both evaluations' standard errors."""
    spread = math.hypot(stderr_before if stderr_before is not None else stderr_after, stderr_after)
    p = 0.5 * math.erfc(worse / spread / math.sqrt(2)) if spread > 0 else float(worse <= 0)
    return p, f"two-sample z-test, standard errors {stderr_before} and {stderr_after} (no per-item scores)"


def judge(before: EvalRecord, after: EvalRecord, metric: str) -> Regression | None:
    """The regression of `metric` from `before` to `after`, None when the change is within chance."""
    previous, value = before.metrics.get(metric), after.metrics.get(metric)
    if not isinstance(previous, int | float) or not isinstance(value, int | float):
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    if sign * (previous - value) <= 0:
        return None  # not worse at all
    old, new = items_of(before, metric), items_of(after, metric)
    if old is not None and new is not None and len(old) == len(new) and new:
        if set(old) | set(new) <= {0.0, 1.0}:
            p, test = mcnemar_worse([sign * v for v in old], [sign * v for v in new])
        else:
            p, test = paired_t_worse([sign * (b - a) for b, a in zip(old, new)])
    elif (stderr := stderr_of(after, metric)) is not None:
        p, test = two_sample_worse(sign * (previous - value), stderr_of(before, metric), stderr)
    else:
        return None
    if p >= FALSE_ALARM_RATE:
        return None
    return Regression(metric, before.step, after.step, previous, value, p, test)


def find_regressions(records: list[EvalRecord]) -> list[Regression]:
    """Every metric that got worse beyond chance (at `FALSE_ALARM_RATE`) between consecutive evaluated steps."""
    ordered = sorted(records, key=lambda r: r.step)
    found = []
    for before, after in zip(ordered, ordered[1:]):
        for metric in after.metrics:
            if (regression := judge(before, after, metric)) is not None:
                found.append(regression)
    return found

"""Regressions between checkpoints: a benchmark score that gets worse by more than its standard error.

lm-eval reports a standard error next to most metrics (`acc_stderr,none`); the evaluation records keep
lm-eval's `results` (records.py), so the check needs nothing new on disk. From one evaluated step to
the next, a metric regresses when it falls (rises, for perplexities, bits per byte and losses) by more
than the later evaluation's standard error — the noise of the score that is being trusted. Metrics
without a numeric standard error (e.g. bits per byte, reported as "N/A") are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.evaluation.records import EvalRecord

# metric names where lower is better; every other metric (acc, acc_norm, exact_match, f1, ...) is higher-better
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "bpb", "loss")


@dataclass(frozen=True)
class Regression:
    metric: str  # the flat `eval/<task>/<metric>` name of the learning curves
    step_before: int
    step: int
    before: float
    after: float
    stderr: float

    def describe(self) -> str:
        return (
            f"{self.metric.removeprefix('eval/')} went from {self.before:.4f} (step {self.step_before}) to "
            f"{self.after:.4f} (step {self.step}), worse by more than its standard error {self.stderr:.4f}"
        )


def lower_is_better(metric: str) -> bool:
    return any(word in metric.rsplit("/", 1)[-1] for word in LOWER_IS_BETTER)


def stderr_of(record: EvalRecord, metric: str) -> float | None:
    """lm-eval's standard error of a flat `eval/<task>/<metric>` value in `record`, None when not numeric."""
    _, task, name = metric.split("/", 2)
    for key, value in record.results.get(task, {}).items():
        if (
            key.split(",")[0] == f"{name}_stderr"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            return float(value)
    return None


def find_regressions(records: list[EvalRecord]) -> list[Regression]:
    """Every metric that got worse by more than its standard error between consecutive evaluated steps."""
    ordered = sorted(records, key=lambda r: r.step)
    found = []
    for before, after in zip(ordered, ordered[1:]):
        for metric, value in after.metrics.items():
            previous = before.metrics.get(metric)
            stderr = stderr_of(after, metric)
            if previous is None or stderr is None:
                continue
            worse = value - previous if lower_is_better(metric) else previous - value
            if worse > stderr:
                found.append(Regression(metric, before.step, after.step, previous, value, stderr))
    return found

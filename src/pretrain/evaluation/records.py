"""Evaluation records (`<output_dir>/evals/step-NNNNNNN.json`): one per evaluated step, written and read here.

    {"step": 200, "tokens_seen": 409600, "checkpoint": ".../checkpoints/step-0000200",
     "tasks": ["val_bpb", ...], "metrics": {"eval/val_bpb": 1.93, ...}, "results": {lm-eval's per task},
     "include_path": ".../evals/tasks", "seconds": 4.2,
     "task_facts": {"hellaswag": {"dataset": "Rowan/hellaswag", "split": "validation", "num_fewshot": 0,
                                  "chance": 0.25}, ...},
     "items": {"stdlib_cloze": {"acc": [1.0, 0.0, ...], "acc_norm": [...]}, ...}}

`items`: each evaluated document's score, in document order (lm-eval's logged samples) — what the paired
regression test compares between two evaluations of the same documents (regressions.py).

The in-loop evaluator (loop.py) writes the run's own records, `seconds` and no checkpoint, into `evals/`; the
path of step N's record is `RunLayout.eval_record(N)`. `pretrain eval` (commands/evaluate.py) writes the
same format with the checkpoint and lm-eval's include path into a folder of its own (`write_record_in`), never
over the run's. Keys left unset are omitted. The learning curves (report.py) read every record of a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.layout import CHECKPOINT_PREFIX, RunLayout, step_name
from pretrain.core.progress import get_logger

log = get_logger("pretrain.eval")

EVAL_RESULTS = "eval_results.json"  # `pretrain eval CHECKPOINT`: its record, written into the model folder


@dataclass
class EvalRecord:
    step: int
    tokens_seen: int | None
    tasks: list[str]
    metrics: dict[str, float]
    """Flat `eval/<task>/<metric>` values (harness.flatten): the learning curves' columns."""
    results: dict = field(default_factory=dict)
    """lm-eval's `results` section, per task."""
    checkpoint: str | None = None
    include_path: str | None = None
    seconds: float | None = None
    """Wall time of an in-loop evaluation (counted as evaluation overhead)."""
    task_facts: dict[str, dict] = field(default_factory=dict)
    """Per task: its Hub dataset id, config, split, shots and chance level (metrics.task_facts)."""
    items: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Per task and metric: each document's score, in document order (harness.item_scores)."""

    def to_json(self) -> dict:
        out: dict = {"step": self.step, "tokens_seen": self.tokens_seen}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        out.update(tasks=self.tasks, metrics=self.metrics, results=self.results)
        for key in ("include_path", "seconds"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.task_facts:
            out["task_facts"] = self.task_facts
        if self.items:
            out["items"] = self.items
        return out

    @classmethod
    def from_json(cls, raw: dict) -> EvalRecord:
        return cls(
            step=raw["step"],
            tokens_seen=raw.get("tokens_seen"),
            tasks=raw.get("tasks", []),
            metrics=raw["metrics"],
            results=raw.get("results", {}),
            checkpoint=raw.get("checkpoint"),
            include_path=raw.get("include_path"),
            seconds=raw.get("seconds"),
            task_facts=raw.get("task_facts", {}),
            items=raw.get("items", {}),
        )


def write_eval_record(layout: RunLayout, record: EvalRecord) -> Path:
    """Write (atomically) the record of `record.step` into the run's `evals/`."""
    return write_record_in(layout.evals, record)


def write_record_in(folder: Path, record: EvalRecord) -> Path:
    """Write (atomically) the record of `record.step` into `folder` (`step-NNNNNNN.json`)."""
    path = Path(folder) / f"{step_name(record.step)}.json"
    write_json_atomic(path, record.to_json())
    return path


def read_eval_records(layout: RunLayout) -> list[EvalRecord]:
    """Every in-loop evaluation record of a run, by step; an unreadable one is skipped with a warning."""
    return read_records_in(layout.evals)


def read_records_in(folder: Path) -> list[EvalRecord]:
    """Every evaluation record in `folder`, by step; an unreadable one is skipped with a warning."""
    records = []
    for path in sorted(Path(folder).glob(f"{CHECKPOINT_PREFIX}*.json")):
        try:
            records.append(EvalRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable evaluation record (%s: %s); skipped", path, type(exc).__name__, exc)
    return records

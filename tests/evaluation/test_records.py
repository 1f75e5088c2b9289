"""Evaluation records (evaluation/records.py): where they go, their keys, reading a run's records back."""

from __future__ import annotations

import json

from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import EvalRecord, read_eval_records, write_eval_record


def _in_loop(step: int) -> EvalRecord:
    return EvalRecord(
        step=step,
        tokens_seen=step * 512,
        tasks=["val_bpb"],
        metrics={"eval/val_bpb/bpb": 2.0 - step / 1000},
        results={"val_bpb": {"bpb": 2.0}},
        seconds=1.25,
    )


def test_in_loop_record_path_and_keys(tmp_path):
    layout = RunLayout(tmp_path)
    path = write_eval_record(layout, _in_loop(200))
    assert path == layout.eval_record(200) == tmp_path / "evals" / "step-0000200.json"
    raw = json.loads(path.read_text())
    assert list(raw) == ["step", "tokens_seen", "tasks", "metrics", "results", "seconds"]


def test_checkpoint_record_keys(tmp_path):
    record = EvalRecord(
        step=0,
        tokens_seen=None,
        tasks=["val_bpb"],
        metrics={},
        results={},
        checkpoint="/run/final",
        include_path="/run/evals/tasks",
    )
    raw = json.loads(write_eval_record(RunLayout(tmp_path), record).read_text())
    assert list(raw) == ["step", "tokens_seen", "checkpoint", "tasks", "metrics", "results", "include_path"]
    assert raw["tokens_seen"] is None


def test_records_read_back_in_step_order(tmp_path):
    layout = RunLayout(tmp_path)
    for step in (1000, 20, 300):
        write_eval_record(layout, _in_loop(step))
    records = read_eval_records(layout)
    assert [r.step for r in records] == [20, 300, 1000]
    assert records[0] == _in_loop(20)


def test_unreadable_records_are_skipped(tmp_path):
    layout = RunLayout(tmp_path)
    write_eval_record(layout, _in_loop(10))
    evals = layout.evals
    (evals / "step-0000020.json").write_text("{half")
    (evals / "step-0000030.json").write_text('{"tokens_seen": 1}')  # no step, no metrics
    (evals / "summary.json").write_text("{}")  # not a record
    assert [r.step for r in read_eval_records(layout)] == [10]
    assert read_eval_records(RunLayout(tmp_path / "no-such-run")) == []

"""`pretrain watch`: the view of a run from its own files (--once: plain text)."""

from __future__ import annotations

import json

import pytest

from pretrain.commands.watch import watch
from pretrain.commands.watch_state import read_run
from pretrain.core.errors import PretrainError
from pretrain.evaluation.records import EvalRecord, write_record_in


def write_run(folder, finished: bool, now: float) -> None:
    folder.mkdir(parents=True)
    records = [{"time": now - 100, "step": 0, "event": "start", "params": 1000}]
    for step in range(10, 110, 10):
        records.append(
            {
                "time": now - 100 + step,
                "step": step,
                "tokens_seen": step * 4096,
                "loss": 8.0 - step / 25,
                "lr": 1e-3,
                "tokens_per_s": 4715.0,
                "mfu": 0.012,
                "eta_s": (100 - step) * 2.0,
                "skipped_updates": 1 if step >= 50 else 0,
            }
        )
        if step % 50 == 0:
            records.append(
                {
                    "time": now,
                    "step": step,
                    "tokens_seen": step * 4096,
                    "val/loss": 6.5 - step / 50,
                    "val/bpb": 2.1 - step / 500,
                }
            )
            records.append(
                {
                    "time": now,
                    "step": step,
                    "event": "forecast",
                    "phase": "stable",
                    "actual": 1.0,
                    "predicted": 6.0 - step / 50,
                    "low": 5.5 - step / 50,
                    "high": 6.6 - step / 50,
                    "outside": step == 100,
                }
            )
    records.append({"time": now, "step": 60, "event": "restart", "restarts": 1})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    record = EvalRecord(
        step=100,
        tasks=["stdlib_cloze"],
        tokens_seen=409600,
        metrics={"eval/stdlib_cloze/acc": 0.6125},
        results={"stdlib_cloze": {"acc,none": 0.6125, "acc_stderr,none": 0.0548}},
    )
    write_record_in(folder / "evals", record)
    if finished:
        (folder / "final").mkdir()


def test_once_prints_the_view_of_a_finished_run(tmp_path, capsys):
    """The issue's acceptance: `pretrain watch --once` on a finished run prints the view."""
    import time

    write_run(tmp_path / "run", finished=True, now=time.time())
    assert watch(tmp_path / "run", once=True, width=110) == 0
    out = capsys.readouterr().out
    assert "run (" in out and ": finished" in out
    assert "step 100" in out and "tokens 409,600" in out and "tok/s 4,715" in out and "MFU 1.2%" in out
    assert "validation: loss 4.5000   bits/byte 1.9000" in out
    assert "forecast (stable): 4.0000 [3.5000, 4.6000], actual 1.0000: OUTSIDE the band" in out
    assert "skipped steps 1   rollbacks 0   restarts 1" in out
    assert "train loss" in out and "forecast low" in out and "tokens seen" in out  # the plot and its legend
    assert "stdlib_cloze/acc" in out and "0.6125" in out and "0.0548" in out
    assert "\x1b[" not in out  # plain text for logs


def test_a_run_without_news_is_said_to_be_stalled(tmp_path):
    write_run(tmp_path / "run", finished=False, now=1_000_000.0)
    state = read_run(tmp_path / "run", now=1_000_000.0 + 3600)
    assert state.status.startswith("no record for 60m") and state.eta_s == 0.0
    assert [t for t, _, _ in state.band] == [50 * 4096, 100 * 4096]
    assert read_run(tmp_path / "run", now=1_000_000.0 + 5).status == "training"
    with pytest.raises(PretrainError, match="no such run folder"):
        read_run(tmp_path / "nothing")

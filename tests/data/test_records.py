"""Curation scratch formats (data/records.py): kept documents, sorted signature runs, atomic task folders, stats."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.core.atomic import atomic_dir
from pretrain.core.errors import DataError
from pretrain.data.records import (
    KIND_NEAR,
    SignatureRuns,
    is_done,
    iter_kept,
    read_stats,
    read_units,
    write_kept,
    write_stats,
    write_units,
)
from pretrain.data.units import Unit


def test_kept_documents_round_trip(tmp_path):
    path = tmp_path / "kept-0.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_kept(fh, 7, "doc7", "é\n")
        write_kept(fh, 2**63 + 5, "big", "ünï")
    assert path.read_text(encoding="utf-8").splitlines()[0] == '[7, "doc7", "é\\n"]'
    assert list(iter_kept(path)) == [(7, "doc7", "é\n"), (2**63 + 5, "big", "ünï")]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("[1, \n")
    with pytest.raises(DataError, match=r"kept-0\.jsonl:3: corrupt"):
        list(iter_kept(path))


def test_signature_runs_are_sorted_and_bounded(tmp_path):
    runs = SignatureRuns(tmp_path, run_records=10)
    rng = np.random.default_rng(0)
    for doc in range(7):
        runs.add(rng.integers(0, 2**63, size=4, dtype=np.uint64), doc, KIND_NEAR)
    runs.flush()
    files = sorted(tmp_path.glob("sig-*.npy"))
    assert runs.records == 28 and len(files) == 3  # flushed at 12 and 24 records, then the rest
    for f in files:
        run = np.load(f)
        assert len(run) <= 12 and np.all(np.diff(run["key"].astype(np.float64)) >= 0)
    assert sum(len(np.load(f)) for f in files) == 28


def test_a_failed_task_publishes_nothing_and_a_finished_one_is_done(tmp_path):
    final = tmp_path / "pass" / "t00000"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "part").write_text("half")
        raise RuntimeError("killed")
    assert not is_done(final) and not list((tmp_path / "pass").iterdir())
    with atomic_dir(final) as tmp:
        write_stats(tmp, {"sources": []})
    assert is_done(final) and read_stats(final) == {"sources": []}


def test_units_round_trip_and_stats_errors_name_the_file(tmp_path):
    plans = [
        [Unit(0, 0, "a.jsonl", 0, 64, 64, whole_file=False), Unit(0, 1, "a.jsonl", 64, 100, 36, False)],
        [],
    ]
    write_units(tmp_path, plans)
    assert read_units(tmp_path) == plans
    with pytest.raises(DataError, match=r"stats\.json: missing"):
        read_stats(tmp_path / "nowhere")
    (tmp_path / "stats.json").write_text("{")
    with pytest.raises(DataError, match=r"stats\.json: corrupt"):
        read_stats(tmp_path)


def test_partial_outputs_of_killed_tasks_are_removed_and_finished_ones_kept(tmp_path):
    from pretrain.data.executor import remove_partial_outputs

    finished = tmp_path / "pass" / "t00000"
    finished.mkdir(parents=True)
    (finished / "kept-0.jsonl").write_text("x")
    partial = tmp_path / "pass" / ".t00001.tmp-4242-1"  # what a SIGKILLed atomic_dir leaves
    partial.mkdir()
    (partial / "kept-0.jsonl").write_text("half")
    (tmp_path / "dedup").mkdir()
    (tmp_path / "dedup" / "edges.tmp-4243.npy").write_bytes(b"half")  # a SIGKILLed save_array
    remove_partial_outputs(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "dedup",
        "pass",
        "pass/t00000",
        "pass/t00000/kept-0.jsonl",
    ]

"""Curation pass records (data/records.py): the compact on-disk encoding, shard merge order, stats, errors."""

from __future__ import annotations

import json

import pytest

from pretrain.core.errors import DataError
from pretrain.data.records import (
    PassRecord,
    ShardReadCounts,
    iter_merged,
    iter_pass,
    pass_file,
    read_stats,
    stats_file,
    write_pass,
    write_stats,
)
from pretrain.data.sources import ReadStats


def _record(ordinal: int, status: str = "ok", text: str = "x") -> PassRecord:
    return PassRecord(
        ordinal=ordinal,
        source_idx=ordinal % 2,
        doc_id=f"doc{ordinal}",
        status=status,
        detail="" if status == "ok" else "why",
        text=text,
        bytes=len(text.encode("utf-8")),
        exact_key="ab" * 16 if status == "ok" else "",
        band_keys=["0011223344556677"] if status == "ok" else [],
    )


def test_a_record_is_one_compact_json_array_in_field_order(tmp_path):
    write_pass(tmp_path, 3, [_record(7, text="é\n")])
    line = pass_file(tmp_path, 3).read_text(encoding="utf-8")
    assert pass_file(tmp_path, 3).name == "pass-00003.jsonl"
    assert line == (
        '[7, 1, "doc7", "ok", "", "é\\n", 3, "abababababababababababababababab", ["0011223344556677"]]\n'
    )


def test_records_round_trip(tmp_path):
    records = [_record(0), _record(2, status="filter:length", text="too short"), _record(4, text="ünï")]
    write_pass(tmp_path, 0, records)
    assert list(iter_pass(tmp_path, 0)) == records
    assert not list(tmp_path.glob("*.tmp-*")), "the temporary file is renamed into place"


def test_merge_yields_every_shard_in_ordinal_order(tmp_path):
    world = 3
    for rank in range(world):
        write_pass(tmp_path, rank, [_record(i) for i in range(20) if i % world == rank])
    assert [r.ordinal for r in iter_merged(tmp_path, world)] == list(range(20))


def test_stats_round_trip(tmp_path):
    stats = [ReadStats(docs=4, bytes=100, undecodable_bytes=2, files=["a", "b"]), ReadStats()]
    write_stats(tmp_path, 1, stats)
    assert stats_file(tmp_path, 1).name == "pass-00001.stats.json"
    assert json.loads(stats_file(tmp_path, 1).read_text())[0] == {
        "docs": 4,
        "bytes": 100,
        "undecodable_bytes": 2,
        "files": 2,
    }
    assert read_stats(tmp_path, 1) == [ShardReadCounts(4, 100, 2, 2), ShardReadCounts(0, 0, 0, 0)]


def test_corrupt_or_missing_files_name_themselves(tmp_path):
    write_pass(tmp_path, 0, [_record(0)])
    with open(pass_file(tmp_path, 0), "a", encoding="utf-8") as fh:
        fh.write("[1, 0, \n")
    with pytest.raises(DataError, match=r"pass-00000\.jsonl:2: corrupt"):
        list(iter_pass(tmp_path, 0))
    with pytest.raises(DataError, match=r"pass-00004\.stats\.json: missing"):
        read_stats(tmp_path, 4)
    stats_file(tmp_path, 0).write_text("[{}]")
    with pytest.raises(DataError, match=r"pass-00000\.stats\.json: corrupt"):
        read_stats(tmp_path, 0)

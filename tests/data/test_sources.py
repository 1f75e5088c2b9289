"""Local sources (data/sources.py): formats, globs and folders, document splitting, budgets, encodings, errors."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain.config import Recipe
from pretrain.core.errors import DataError
from pretrain.data.sources import iter_source
from pretrain.data.units import ReadStats
from pretrain.testing import MINIMAL_MODEL, MINIMAL_TRAIN


def _read(tmp_path, *paths: str, **source) -> tuple[list[tuple[str, str]], ReadStats]:
    """Every document of one local source reading `paths` (relative to tmp_path)."""
    raw = {
        "name": "sources",
        "data": {
            "sources": [
                {
                    "name": "src",
                    "type": "local",
                    "weight": 1,
                    "paths": [str(tmp_path / p) for p in paths],
                    **source,
                }
            ]
        },
        "model": MINIMAL_MODEL,
        "train": MINIMAL_TRAIN,
    }
    # the schema alone: the recipe-level file checks (and their transformers import) are not under test
    recipe = Recipe.model_validate(raw)
    stats = ReadStats()
    return list(iter_source(recipe, recipe.data.sources[0], stats)), stats


def _texts(docs) -> list[str]:
    return [text for _, text in docs]


def test_jsonl_and_gzipped_jsonl_with_a_text_field(tmp_path):
    lines = [json.dumps({"content": f"document {i}"}) for i in range(3)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:2]) + "\n\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(lines[2] + "\n")
    docs, stats = _read(tmp_path, "*.jsonl*", text_field="content")
    assert _texts(docs) == ["document 0", "document 1", "document 2"]
    assert docs[0][0].endswith("a.jsonl:1")
    assert stats.docs == 3 and stats.bytes == 30 and len(stats.files) == 2


def test_json_array_and_parquet(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    pq.write_table(pa.table({"text": ["three", None, "four"]}), tmp_path / "b.parquet")
    docs, _ = _read(tmp_path, "a.json", "b.parquet")
    assert _texts(docs) == ["one", "two", "three", "four"]  # a null cell is no document


def test_txt_document_splits(tmp_path):
    (tmp_path / "t.txt").write_text("para one\nstill one\n\n\npara two\n")
    assert _texts(_read(tmp_path, "t.txt")[0]) == ["para one\nstill one\n\n\npara two\n"]
    assert _texts(_read(tmp_path, "t.txt", doc_split="line")[0]) == ["para one", "still one", "para two"]
    assert _texts(_read(tmp_path, "t.txt", doc_split="paragraph")[0]) == ["para one\nstill one", "para two"]


def test_folders_are_walked_and_hidden_files_skipped(tmp_path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "b.txt").write_text("bee")
    (tmp_path / "corpus" / "sub" / "a.txt").write_text("ay")
    (tmp_path / "corpus" / ".hidden").write_text("no")
    assert _texts(_read(tmp_path, "corpus")[0]) == ["bee", "ay"]


def test_budgets_stop_reading(tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(f"line {i}" for i in range(10)))
    assert len(_read(tmp_path, "t.txt", doc_split="line", budget={"docs": 3})[0]) == 3
    docs, stats = _read(tmp_path, "t.txt", doc_split="line", budget={"bytes": 12})
    assert len(docs) == 2 and stats.bytes == 12


def test_encoding_errors(tmp_path):
    (tmp_path / "bad.txt").write_bytes("caf\u00e9 ".encode() + b"\xff\xfe ok")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhello")
    latin1, stats = _read(tmp_path, "bad.txt")
    assert _texts(latin1) == ["caf\u00c3\u00a9 \u00ff\u00fe ok"] and stats.undecodable_bytes == 2
    assert _texts(_read(tmp_path, "bad.txt", encoding_errors="replace")[0]) == ["caf\u00e9 \ufffd\ufffd ok"]
    with pytest.raises(DataError, match=r"bad\.txt: not valid UTF-8 at byte 6"):
        _read(tmp_path, "bad.txt", encoding_errors="error")
    assert _texts(_read(tmp_path, "bom.txt")[0]) == ["hello"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.jsonl", '{"text": "ok"}\n{"text": \n', r"x\.jsonl:2: invalid JSON line"),
        ("x.jsonl", '{"body": "ok"}\n', r"no text field 'text' \(found: body\)"),
        ("x.jsonl", '{"text": 3}\n', r"field 'text' is int, not text"),
        ("x.parquet", "not parquet", r"not a readable parquet file"),
    ],
)
def test_broken_input_names_the_source_and_file(tmp_path, name, content, expected):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=r"source 'src'.*" + expected):
        _read(tmp_path, name)


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(DataError, match=r"source 'src': file not found: .*absent\.txt"):
        _read(tmp_path, "absent.txt")
    with pytest.raises(DataError, match=r"source 'src': file not found: .*\*\.none"):
        _read(tmp_path, "*.none")

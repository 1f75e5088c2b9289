"""Packed shards: deterministic bytes, EOS between documents, val/train disjoint by document, mismatches caught."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pretrain.core.errors import DataError
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.pack import pack, write_packed


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.glob("*")):
        if p.suffix in (".bin", ".npy") or p.name in ("val_docs.jsonl",):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_and_split_by_document(small_run, tmp_path):
    recipe, out = small_run
    again = tmp_path / "tokens"
    again.mkdir()
    pack(recipe, again)
    assert _digest(out / "tokens") == _digest(again)
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == 512
    val_ids = {
        json.loads(line)["id"] for line in (out / "tokens" / "val_docs.jsonl").read_text().splitlines()
    }
    from pretrain.data.mixio import iter_documents

    train_bases = {d["id"].split("#rep")[0] for d in iter_documents(out / "mix")} - val_ids
    assert val_ids and not (val_ids & train_bases)


def test_documents_end_with_eos(small_run):
    _, out = small_run
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]
    tokens = np.fromfile(out / "tokens" / shard["file"], dtype=np.uint16)
    starts = np.load(out / "tokens" / shard["index"])
    assert starts[0] == 0 and len(starts) == shard["docs"]
    ends = np.append(starts[1:], len(tokens)) - 1
    assert (tokens[ends] == manifest["eos_id"]).all()
    assert (tokens[starts] == manifest["bos_id"]).all()


def test_truncated_shard_and_other_tokenizer_are_caught(tmp_path):
    write_packed(
        tmp_path,
        [[1, 2, 3, 0] * 50],
        [[4, 5, 0] * 20],
        vocab_size=10,
        eos_id=0,
        tokenizer_hash="abc",
    )
    with pytest.raises(DataError, match="another tokenizer"):
        TokenLoader(tmp_path, "train", 8, 2, expected_tokenizer_hash="xyz")
    shard = tmp_path / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-6])
    with pytest.raises(DataError, match="truncated or corrupt"):
        TokenLoader(tmp_path, "train", 8, 2)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt manifest"):
        TokenLoader(tmp_path, "train", 8, 2)

"""The token manifest (tokens/manifest.py): the file's keys and their order, round trip, clear errors."""

from __future__ import annotations

import json

import pytest

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import MANIFEST, SourceTokens, TokenManifest, TokenShard, TokenSplit


def _packed() -> TokenManifest:
    """A manifest as `pretrain pack` writes it (every optional key set)."""
    return TokenManifest(
        dtype="uint16",
        vocab_size=4096,
        eos_id=0,
        bos_id=1,
        splits={
            "train": TokenSplit([TokenShard("train-00000.bin", "train-00000.idx.npy", 900, 9)], 900, 9, 3000),
            "val": TokenSplit([TokenShard("val-00000.bin", "val-00000.idx.npy", 100, 1)], 100, 1, 320),
        },
        tokenizer_hash="abc123",
        encoder="tiktoken",
        seed=0,
        val_fraction=0.01,
        sources={"code": SourceTokens(900, 100, 10, 3320, 1.0, 3.32)},
    )


def test_pack_manifest_keys_in_file_order(tmp_path):
    path = _packed().write(tmp_path)
    assert path == tmp_path / MANIFEST == TokenManifest.path(tmp_path)
    raw = json.loads(path.read_text())
    assert list(raw) == [
        "version",
        "dtype",
        "vocab_size",
        "eos_id",
        "bos_id",
        "tokenizer_hash",
        "encoder",
        "seed",
        "val_fraction",
        "splits",
        "sources",
    ]
    assert raw["splits"]["val"] == {
        "shards": [{"file": "val-00000.bin", "index": "val-00000.idx.npy", "tokens": 100, "docs": 1}],
        "tokens": 100,
        "docs": 1,
        "bytes": 320,
    }
    assert list(raw["sources"]["code"]) == [
        "train_tokens",
        "val_tokens",
        "docs",
        "bytes",
        "token_share",
        "bytes_per_token",
    ]
    assert path.read_text().endswith("}\n") and '\n  "version": 1,' in path.read_text()


def test_round_trip(tmp_path):
    manifest = _packed()
    manifest.write(tmp_path)
    assert TokenManifest.read(tmp_path) == manifest


def test_unset_keys_are_omitted_and_read_as_none(tmp_path):
    bare = TokenManifest("uint32", 70_000, 2, None, {"train": TokenSplit([], 0, 0)})
    bare.write(tmp_path)
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert list(raw) == ["version", "dtype", "vocab_size", "eos_id", "bos_id", "splits"]
    assert raw["bos_id"] is None and "bytes" not in raw["splits"]["train"]
    assert TokenManifest.read(tmp_path) == bare


def test_bytes_per_token():
    assert _packed().splits["val"].bytes_per_token == pytest.approx(3.2)
    assert TokenSplit([], 10, 1).bytes_per_token == 0.0  # no byte count: no bits per byte


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "missing — run `pretrain pack RECIPE` first"),
        ("{not json", "corrupt manifest"),
        ("[1, 2]", "corrupt manifest"),
        ('{"dtype": "uint16", "eos_id": 0, "vocab_size": 9}', "manifest lacks 'splits'"),
        ('{"dtype": "uint16", "eos_id": 0, "vocab_size": 9, "splits": {"train": {}}}', "corrupt manifest"),
    ],
)
def test_bad_manifests_are_errors_naming_the_file(tmp_path, content, expected):
    if content is not None:
        (tmp_path / MANIFEST).write_text(content)
    with pytest.raises(DataError, match=rf"{tmp_path / MANIFEST}: {expected}"):
        TokenManifest.read(tmp_path)
    assert TokenManifest.read_optional(tmp_path) is None

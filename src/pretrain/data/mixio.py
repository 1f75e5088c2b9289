"""The on-disk format of the curated mix (`<output_dir>/mix/`), shared by its writer and readers.

    mix/manifest.json                 {"format": "jsonl", "shards": [...], "total_docs", "total_bytes", "seed",
                                       "sources": {name: {"weight", "share", "docs", "bytes",
                                                          "shards": [{"file", "docs", "bytes"}]}}}
    mix/<source>/part-00003-000.jsonl one JSON object per line: {"key", "id", "source", "text"}, written by
                                      curation task 3 in document-key order

The mix holds every clean, deduplicated document once, per source; the weights are applied in tokens by
`pretrain pack` (and can be applied again at load time, since token shards stay per source). `key` is the
document's place in the corpus (sources.doc_key), so `iter_documents` merges a source's files back into
corpus order: readers see the same sequence whatever the number of curation tasks. Plain JSONL keeps the mix
inspectable with `head`; the token shards are the fast format.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

from pretrain.core.errors import DataError
from pretrain.core.layout import MANIFEST


def read_manifest(mix_dir: Path) -> dict:
    path = Path(mix_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing — run `pretrain curate RECIPE` first") from None
    except ValueError as exc:
        raise DataError(f"{path}: corrupt manifest ({exc}); re-run `pretrain curate RECIPE`") from None


def iter_shard(path: Path) -> Iterator[dict]:
    """The records of one mix file, in its (key) order."""
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path}: shard listed in the manifest is missing; re-run `pretrain curate`"
        ) from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{lineno}: corrupt mix record; re-run `pretrain curate`") from None


def shard_offsets(path: Path) -> list[int]:
    """Byte offset of every record of a mix file (for reading its documents in another order)."""
    offsets, pos = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            offsets.append(pos)
            pos += len(line)
    return offsets


def read_at(fh, offset: int) -> dict:
    fh.seek(offset)
    return json.loads(fh.readline())


def iter_documents(mix_dir: Path, sources: set[str] | None = None) -> Iterator[dict]:
    """Yield `{"key", "id", "source", "text"}` records: source by source, each in corpus (key) order."""
    mix_dir = Path(mix_dir)
    for name, entry in read_manifest(mix_dir)["sources"].items():
        if sources is not None and name not in sources:
            continue
        files = [iter_shard(mix_dir / shard["file"]) for shard in entry["shards"]]
        yield from heapq.merge(*files, key=lambda record: record["key"])


class MixWriter:
    """Write one task's records of one source into files of at most `shard_docs` documents."""

    def __init__(self, out_dir: Path, source: str, rank: int, shard_docs: int = 20_000):
        self.out_dir, self.source, self.rank, self.shard_docs = Path(out_dir), source, rank, shard_docs
        self.shards: list[dict] = []
        self._fh = None

    def write(self, record: dict) -> None:
        if self._fh is None or self.shards[-1]["docs"] >= self.shard_docs:
            self._open_next()
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.shards[-1]["docs"] += 1
        self.shards[-1]["bytes"] += len(record["text"].encode("utf-8"))

    def _open_next(self) -> None:
        if self._fh:
            self._fh.close()
        name = f"{self.source}/part-{self.rank:05d}-{len(self.shards):03d}.jsonl"
        self.shards.append({"file": name, "docs": 0, "bytes": 0})
        (self.out_dir / self.source).mkdir(parents=True, exist_ok=True)
        self._fh = open(self.out_dir / name, "w", encoding="utf-8")

    def close(self) -> list[dict]:
        if self._fh:
            self._fh.close()
            self._fh = None
        return self.shards


def write_manifest(out_dir: Path, sources: dict[str, dict], seed: int) -> dict:
    """`sources`: name -> {"weight", "share", "docs", "bytes", "shards"} in recipe order."""
    manifest = {
        "format": "jsonl",
        "shards": [s["file"] for entry in sources.values() for s in entry["shards"]],
        "seed": seed,
        "total_docs": sum(e["docs"] for e in sources.values()),
        "total_bytes": sum(e["bytes"] for e in sources.values()),
        "sources": sources,
    }
    (Path(out_dir) / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest

"""The on-disk format of the curated mix (`<output_dir>/mix/`), shared by its writer and readers.

    mix/manifest.json          {"format": "jsonl", "shards": [...], "sources": {name: {...}}, ...}
    mix/part-00000.jsonl       one JSON object per line: {"id", "source", "text"}

Plain JSONL keeps the mix inspectable with `head`; the token shards are the fast format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pretrain.core.errors import DataError

MANIFEST = "manifest.json"


def read_manifest(mix_dir: Path) -> dict:
    path = Path(mix_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing — run `pretrain curate RECIPE` first") from None
    except ValueError as exc:
        raise DataError(f"{path}: corrupt manifest ({exc}); re-run `pretrain curate RECIPE`") from None


def iter_documents(mix_dir: Path, sources: set[str] | None = None) -> Iterator[dict]:
    """Yield `{"id", "source", "text"}` records of the mix in manifest order."""
    mix_dir = Path(mix_dir)
    for shard in read_manifest(mix_dir)["shards"]:
        path = mix_dir / shard
        try:
            fh = open(path, encoding="utf-8")
        except FileNotFoundError:
            raise DataError(
                f"{path}: shard listed in the manifest is missing; re-run `pretrain curate`"
            ) from None
        with fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    raise DataError(
                        f"{path}:{lineno}: corrupt mix record; re-run `pretrain curate`"
                    ) from None
                if sources is None or record["source"] in sources:
                    yield record


class MixWriter:
    """Write records into numbered JSONL shards of at most `shard_docs` documents."""

    def __init__(self, out_dir: Path, shard_docs: int = 20_000):
        self.out_dir = Path(out_dir)
        self.shard_docs = shard_docs
        self.shards: list[str] = []
        self._fh = None
        self._in_shard = 0

    def write(self, record: dict) -> None:
        if self._fh is None or self._in_shard >= self.shard_docs:
            self._open_next()
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._in_shard += 1

    def _open_next(self) -> None:
        if self._fh:
            self._fh.close()
        name = f"part-{len(self.shards):05d}.jsonl"
        self.shards.append(name)
        self._fh = open(self.out_dir / name, "w", encoding="utf-8")
        self._in_shard = 0

    def close(self, manifest: dict) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        manifest = {"format": "jsonl", "shards": self.shards, **manifest}
        (self.out_dir / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

"""The on-disk format of curation's document pass (`<work>/pass-*`), shared by its writer and reader.

    pass-00003.jsonl         one `PassRecord` per document of shard 3, in ordinal order, as a JSON array:
                             [ordinal, source_idx, doc_id, status, detail, text, bytes, exact_key, band_keys]
    pass-00003.stats.json    [{"docs", "bytes", "undecodable_bytes", "files"}] per source, as that shard
                             read them; written last, so its presence marks the shard complete

Arrays rather than objects keep the scratch files compact (a pass holds the whole corpus once). The
worker (worker.py) writes them; the merge (curate.py) reads every shard back in document order.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

from pretrain.core.errors import DataError
from pretrain.data.sources import ReadStats


class PassRecord(NamedTuple):
    """One document after the per-document pass."""

    ordinal: int
    """Position of the document in the whole corpus (all sources, in order): the merge order."""
    source_idx: int
    doc_id: str
    status: str
    """"ok", or the drop class: "empty", "filter:<name>", "contamination"."""
    detail: str
    """Why it was dropped (the filter's reason, the contaminated task); "" when kept."""
    text: str
    """The normalised text; a dropped document's is cut to the report's example length."""
    bytes: int
    """UTF-8 size of the whole normalised text (even when `text` is cut)."""
    exact_key: str
    """Hex of the exact-dedup key ("" unless kept)."""
    band_keys: list[str]
    """Hex of the MinHash LSH band keys ([] unless kept and near-dedup is on)."""


class ShardReadCounts(NamedTuple):
    """What a shard read from one source (every shard reads every document, so all shards agree)."""

    docs: int
    bytes: int
    undecodable_bytes: int
    files: int


def pass_file(work: Path, rank: int) -> Path:
    return Path(work) / f"pass-{rank:05d}.jsonl"


def stats_file(work: Path, rank: int) -> Path:
    return Path(work) / f"pass-{rank:05d}.stats.json"


def write_pass(work: Path, rank: int, records: Iterable[PassRecord]) -> None:
    """Write shard `rank`'s records through a temporary file, so a killed task leaves no partial shard."""
    out = pass_file(work, rank)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)


def _read_pass(path: Path, fh) -> Iterator[PassRecord]:
    for lineno, line in enumerate(fh, 1):
        try:
            yield PassRecord(*json.loads(line))
        except (ValueError, TypeError):
            raise DataError(
                f"{path}:{lineno}: corrupt curation pass record; re-run `pretrain curate`"
            ) from None


def iter_pass(work: Path, rank: int) -> Iterator[PassRecord]:
    """The records of shard `rank`, in ordinal order."""
    path = pass_file(work, rank)
    with open(path, encoding="utf-8") as fh:
        yield from _read_pass(path, fh)


def iter_merged(work: Path, tasks: int) -> Iterator[PassRecord]:
    """Every shard's records in document (ordinal) order; each shard file is already sorted."""
    with ExitStack() as stack:
        shards = []
        for rank in range(tasks):
            path = pass_file(work, rank)
            shards.append(_read_pass(path, stack.enter_context(open(path, encoding="utf-8"))))
        yield from heapq.merge(*shards, key=lambda record: record.ordinal)


def write_stats(work: Path, rank: int, stats: list[ReadStats]) -> None:
    """Mark shard `rank` complete with what it read from each source (after `write_pass`)."""
    counts = [
        {"docs": s.docs, "bytes": s.bytes, "undecodable_bytes": s.undecodable_bytes, "files": len(s.files)}
        for s in stats
    ]
    stats_file(work, rank).write_text(json.dumps(counts), encoding="utf-8")


def read_stats(work: Path, rank: int) -> list[ShardReadCounts]:
    path = stats_file(work, rank)
    try:
        return [ShardReadCounts(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise DataError(f"{path}: missing — curation shard {rank} did not finish") from None
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: corrupt shard statistics ({exc}); re-run `pretrain curate`") from None

"""The on-disk formats of curation's scratch work (`<work>/`), shared by the stages that write and read them.

    units.json                    every source's input units (sources.Unit), planned once before the tasks run
    pass/t00003/                  task 3's document pass, renamed into place when complete:
        kept-<s>.jsonl            source s's documents that passed the filters, in document-key order:
                                  one JSON array [key, doc_id, text] per line
        sig-0000.npy ...          dedup signatures, sorted runs of SIG_DTYPE records (key, doc, kind), each at
                                  most SIG_RUN_RECORDS long: memory per task is bounded whatever its share
        stats.json                per source: read counts, dropped classes (with examples), kept docs/bytes
    dedup/edges-00007.npy         bucket 7's duplicate edges (EDGE_DTYPE: doc -> the first doc of its group)
    dedup/removed.npy             the documents to drop (REMOVED_DTYPE, sorted by doc): every non-first member
                                  of a duplicate cluster
    final/t00003/                 task 3's deduplicated mix files and stats.json (mixio writes the files)

A task writes into a temporary sibling `.<name>.tmp-<pid>-<ns>` (core/atomic.py `atomic_dir`) and renames it: a killed task leaves no partial output, and a rerun
treats an existing folder (or file) as done (`is_done`), so it skips completed tasks with the same result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pretrain.core.errors import DataError
from pretrain.data.units import Unit

SIG_DTYPE = np.dtype([("key", "<u8"), ("doc", "<u8"), ("kind", "u1")])
"""One dedup signature: a hash `key` shared by candidate duplicates, the document key, KIND_EXACT/KIND_NEAR."""
EDGE_DTYPE = np.dtype([("doc", "<u8"), ("first", "<u8"), ("kind", "u1")])
REMOVED_DTYPE = np.dtype([("doc", "<u8"), ("root", "<u8"), ("kind", "u1")])
KIND_EXACT, KIND_NEAR = 0, 1
SIG_RUN_RECORDS = 1 << 20  # 17 MB per sorted run held in memory before it is written
STATS = "stats.json"


def units_file(work: Path) -> Path:
    return Path(work) / "units.json"


def write_units(work: Path, plans: list[list[Unit]]) -> None:
    units_file(work).write_text(json.dumps([[asdict(u) for u in units] for units in plans]), encoding="utf-8")


def read_units(work: Path) -> list[list[Unit]]:
    return [[Unit(**u) for u in units] for units in json.loads(units_file(work).read_text(encoding="utf-8"))]


def pass_dir(work: Path, rank: int) -> Path:
    return Path(work) / "pass" / f"t{rank:05d}"


def final_dir(work: Path, rank: int) -> Path:
    return Path(work) / "final" / f"t{rank:05d}"


def dedup_dir(work: Path) -> Path:
    return Path(work) / "dedup"


def edges_file(work: Path, bucket: int) -> Path:
    return dedup_dir(work) / f"edges-{bucket:05d}.npy"


def removed_file(work: Path) -> Path:
    return dedup_dir(work) / "removed.npy"


def kept_file(folder: Path, source_idx: int) -> Path:
    return Path(folder) / f"kept-{source_idx}.jsonl"


def progress_file(work: Path, stage: str, rank: int) -> Path:
    """Where task `rank` of `stage` records its counts for the total progress line (taskprogress.py)."""
    return Path(work) / "progress" / f"{stage}-t{rank:05d}.json"


def is_done(path: Path) -> bool:
    """A task's output exists only once complete (renamed into place)."""
    return Path(path).exists()


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file, so a reader never sees a partial array."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def write_kept(fh, key: int, doc_id: str, text: str) -> None:
    fh.write(json.dumps([key, doc_id, text], ensure_ascii=False) + "\n")


def iter_kept(path: Path) -> Iterator[tuple[int, str, str]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                key, doc_id, text = json.loads(line)
            except (ValueError, TypeError):
                raise DataError(
                    f"{path}:{lineno}: corrupt curation pass record; re-run `pretrain curate`"
                ) from None
            yield key, doc_id, text


def write_stats(folder: Path, stats: object) -> None:
    (Path(folder) / STATS).write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")


def read_stats(folder: Path) -> object:
    path = Path(folder) / STATS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing — that curation task did not finish; re-run `pretrain curate`"
        ) from None
    except ValueError as exc:
        raise DataError(f"{path}: corrupt task statistics ({exc}); re-run `pretrain curate`") from None


class SignatureRuns:
    """Collect signature records; every SIG_RUN_RECORDS they are sorted by key and written as one run."""

    def __init__(self, folder: Path, run_records: int = SIG_RUN_RECORDS):
        self.folder, self.run_records = Path(folder), run_records
        self._parts: list[np.ndarray] = []
        self._held = 0
        self.runs = 0
        self.records = 0

    def add(self, keys: np.ndarray, doc: int, kind: int) -> None:
        part = np.empty(len(keys), dtype=SIG_DTYPE)
        part["key"], part["doc"], part["kind"] = keys, doc, kind
        self._parts.append(part)
        self._held += len(keys)
        self.records += len(keys)
        if self._held >= self.run_records:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        run = np.concatenate(self._parts)
        run.sort(order=("key", "kind", "doc"))
        np.save(self.folder / f"sig-{self.runs:04d}.npy", run)
        self.runs += 1
        self._parts, self._held = [], 0


def signature_runs(work: Path) -> list[Path]:
    return sorted((Path(work) / "pass").glob("t*/sig-*.npy"))

"""The per-document pass of curation: normalise, filter, decontaminate, hash — one shard per task.

Task `rank` of `world` reads every source in order and takes the documents whose running ordinal
satisfies `ordinal % world == rank`, so the shards partition the corpus whatever the number of tasks.
It writes the shard's pass file and then its stats file, whose presence marks the shard complete
(the format: records.py). Reading is repeated by every task; it costs a small fraction of the filtering
(spaCy word splitting, MinHash) that is divided among them. Since every task reads every document, task 0's
position is the pass's: it alone reports progress (documents read, rate).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pretrain.core.progress import Progress
from pretrain.data.curation_report import EXAMPLE_CHARS
from pretrain.data.decontam import ContaminationIndex
from pretrain.data.dedup import MinHasher, exact_key
from pretrain.data.filters import apply_filters, build_filters
from pretrain.data.normalize import normalize
from pretrain.data.records import PassRecord, write_pass, write_stats
from pretrain.data.sources import ReadStats, iter_source

TASK_TEXTS = "task_texts.json"  # in the work folder: the evaluation tasks' texts, read by every task
UNCHECKED = "unchecked.json"  # the tasks that could not be checked, and why (for the report)


class DocumentProcessor:
    """Filters per source, the MinHasher and the contamination index, built once per task."""

    def __init__(self, recipe, task_texts: dict[str, list[str]]):
        data = recipe.data
        self.filters = [
            (build_filters(s.filters), tuple(getattr(s, "strip_patterns", ()))) for s in data.sources
        ]
        self.normalize_cfg = data.normalize
        d = data.dedup
        self.hasher = MinHasher(d.ngram, d.bands, d.rows, d.seed) if d.near else None
        self.contam = ContaminationIndex(task_texts, data.decontaminate.ngram)

    def __call__(self, idx: int, raw: str) -> tuple[str, str, str, bytes, list[bytes]]:
        """-> (status, detail, text, exact_key, band_keys)."""
        filters, patterns = self.filters[idx]
        text = normalize(raw, self.normalize_cfg, patterns)
        if not text.strip():
            return "empty", "", raw, b"", []
        dropped = apply_filters(text, filters)
        if dropped:
            return f"filter:{dropped[0]}", dropped[1], text, b"", []
        task = self.contam.match(text) if self.contam else None
        if task:
            return "contamination", task, text, b"", []
        bands = self.hasher.band_keys(text) if self.hasher else []
        return "ok", "", text, exact_key(text), bands


def document_pass(recipe, work: Path, rank: int, world: int) -> None:
    """Process shard `rank` of `world` into its pass and stats files under `work`."""
    work = Path(work)
    task_texts = json.loads((work / TASK_TEXTS).read_text(encoding="utf-8"))
    stats = [ReadStats() for _ in recipe.data.sources]
    records = _shard_records(recipe, DocumentProcessor(recipe, task_texts), stats, rank, world)
    write_pass(work, rank, _reporting(records, recipe, rank))
    write_stats(work, rank, stats)


def _reporting(records: Iterator[PassRecord], recipe, rank: int) -> Iterator[PassRecord]:
    """Task 0 reports the pass's progress: a record's ordinal + 1 is the number of documents read so far."""
    with Progress("curate", unit="docs", disable=rank != 0) as bar:
        for record in records:
            bar.update_to(record.ordinal + 1, fields={"source": recipe.data.sources[record.source_idx].name})
            yield record


def _shard_records(
    recipe, process: DocumentProcessor, stats: list[ReadStats], rank: int, world: int
) -> Iterator[PassRecord]:
    """Read every source (filling `stats`) and process the documents of shard `rank`."""
    ordinal = 0
    for idx, src in enumerate(recipe.data.sources):
        for doc_id, raw in iter_source(recipe, src, stats[idx]):
            if ordinal % world == rank:
                status, detail, text, ekey, bands = process(idx, raw)
                yield PassRecord(
                    ordinal=ordinal,
                    source_idx=idx,
                    doc_id=doc_id,
                    status=status,
                    detail=detail,
                    text=text if status == "ok" else text[:EXAMPLE_CHARS],
                    bytes=len(text.encode("utf-8")),
                    exact_key=ekey.hex(),
                    band_keys=[b.hex() for b in bands],
                )
            ordinal += 1

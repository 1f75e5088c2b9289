"""The per-document pass of curation: normalise, filter, decontaminate, hash — one shard per task.

Task `rank` of `world` reads every source in order and takes the documents whose running ordinal
satisfies `ordinal % world == rank`, so the shards partition the corpus whatever the number of tasks.
It writes `pass-<rank>.jsonl` (one record per document, in ordinal order) and then
`pass-<rank>.stats.json`, whose presence marks the shard complete. Reading is repeated by every task;
it costs a small fraction of the filtering (spaCy word splitting, MinHash) that is divided among them.

Record: [ordinal, source_idx, doc_id, status, detail, text, bytes, exact_key_hex, band_keys_hex]
(status "ok" or a drop class; a dropped document's text is cut to the report's example length).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pretrain.data.curation_report import EXAMPLE_CHARS
from pretrain.data.decontam import ContaminationIndex
from pretrain.data.dedup import MinHasher, exact_key
from pretrain.data.filters import apply_filters, build_filters
from pretrain.data.normalize import normalize
from pretrain.data.sources import ReadStats, iter_source

TASK_TEXTS = "task_texts.json"  # in the work folder: the evaluation tasks' texts, read by every task
UNCHECKED = "unchecked.json"  # the tasks that could not be checked, and why (for the report)


def pass_file(work: Path, rank: int) -> Path:
    return Path(work) / f"pass-{rank:05d}.jsonl"


def stats_file(work: Path, rank: int) -> Path:
    return Path(work) / f"pass-{rank:05d}.stats.json"


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
    """Process shard `rank` of `world` into `pass-<rank>.jsonl` + `.stats.json` under `work`."""
    work = Path(work)
    task_texts = json.loads((work / TASK_TEXTS).read_text(encoding="utf-8"))
    process = DocumentProcessor(recipe, task_texts)
    stats = [ReadStats() for _ in recipe.data.sources]
    out, tmp = pass_file(work, rank), pass_file(work, rank).with_suffix(f".tmp-{os.getpid()}")
    ordinal = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for idx, src in enumerate(recipe.data.sources):
            for doc_id, raw in iter_source(recipe, src, stats[idx]):
                if ordinal % world == rank:
                    status, detail, text, ekey, bands = process(idx, raw)
                    nbytes = len(text.encode("utf-8"))
                    kept = text if status == "ok" else text[:EXAMPLE_CHARS]
                    rec = [
                        ordinal,
                        idx,
                        doc_id,
                        status,
                        detail,
                        kept,
                        nbytes,
                        ekey.hex(),
                        [b.hex() for b in bands],
                    ]
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                ordinal += 1
    os.replace(tmp, out)
    stats_json = [
        {"docs": s.docs, "bytes": s.bytes, "undecodable_bytes": s.undecodable_bytes, "files": len(s.files)}
        for s in stats
    ]
    stats_file(work, rank).write_text(json.dumps(stats_json), encoding="utf-8")

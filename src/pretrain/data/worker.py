"""The per-document pass of curation: normalise, filter, decontaminate, hash — task `rank` of `world`.

A task reads only its units of every source (sources.task_units: dealt round-robin, so no file, row group
or Hub shard is read twice) and its part of each source's budget (sources.split_budget). For every kept
document it writes the text (records.kept_file, in document-key order) and its dedup signatures
(records.SignatureRuns); per source it counts what it read and dropped (records.write_stats). All of it is
written into a temporary folder renamed into place at the end, so a killed task publishes nothing and a
rerun skips a task whose folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.core.atomic import atomic_dir
from pretrain.data.curation_report import EXAMPLE_CHARS, EXAMPLES_PER_CLASS
from pretrain.data.decontam import ContaminationIndex
from pretrain.data.dedup import MinHasher, exact_key64
from pretrain.data.filters import apply_filters, build_filters
from pretrain.data.normalize import normalize
from pretrain.data.records import (
    KIND_EXACT,
    KIND_NEAR,
    SignatureRuns,
    is_done,
    kept_file,
    pass_dir,
    progress_file,
    read_units,
    write_kept,
    write_stats,
)
from pretrain.data.sources import read_budgeted, split_budget, task_units
from pretrain.data.taskprogress import TaskProgress
from pretrain.data.units import ReadStats, doc_key
from pretrain.data.words import DocumentWords

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
        self.exact = d.exact
        self.hasher = MinHasher(d.ngram, d.bands, d.rows, d.seed) if d.near else None
        self.contam = ContaminationIndex(task_texts, data.decontaminate.ngram)

    def __call__(self, idx: int, raw: str) -> tuple[str, str, DocumentWords | None]:
        """-> (status, detail, document): status "ok", "empty", "filter:<name>" or "contamination".

        The document is the normalised text with its word splits (None when empty): the filters,
        decontamination and `signatures` share one split."""
        filters, patterns = self.filters[idx]
        text = normalize(raw, self.normalize_cfg, patterns)
        if not text.strip():
            return "empty", "", None
        doc = DocumentWords(text)
        dropped = apply_filters(doc, filters)
        if dropped:
            return f"filter:{dropped[0]}", dropped[1], doc
        if self.contam:
            task = self.contam.match(text, doc.lower_words, doc.hashes)
            if task:
                return "contamination", task, doc
        return "ok", "", doc

    def signatures(self, doc: DocumentWords, key: int, sigs: SignatureRuns) -> None:
        """Add a kept document's exact key and MinHash band keys to the task's signature runs."""
        if self.exact:
            sigs.add([exact_key64(doc.text)], key, KIND_EXACT)
        if self.hasher:
            bands = self.hasher.band_keys64(doc.text, doc.lower_words, doc.hashes)
            if len(bands):
                sigs.add(bands, key, KIND_NEAR)


def new_source_stats() -> dict:
    return {"read": {}, "dropped": {}, "kept_docs": 0, "kept_bytes": 0}


def count_drop(entry: dict, cls: str, detail: str, key: int, doc_id: str, text: str, nbytes: int) -> None:
    """Count a dropped document; keep the first EXAMPLES_PER_CLASS in key order as examples."""
    d = entry["dropped"].setdefault(cls, {"docs": 0, "bytes": 0, "reasons": {}, "examples": []})
    d["docs"] += 1
    d["bytes"] += nbytes
    if detail:
        d["reasons"][detail] = d["reasons"].get(detail, 0) + 1
    if len(d["examples"]) < EXAMPLES_PER_CLASS:
        d["examples"].append({"key": key, "id": doc_id, "detail": detail, "text": text[:EXAMPLE_CHARS]})


def document_pass(recipe, work: Path, rank: int, world: int) -> None:
    """Task `rank` of `world`: process its units into `pass/t<rank>/` (skipped when already there)."""
    work = Path(work)
    final = pass_dir(work, rank)
    if is_done(final):
        return
    task_texts = json.loads((work / TASK_TEXTS).read_text(encoding="utf-8"))
    process = DocumentProcessor(recipe, task_texts)
    plans = read_units(work)
    mine = task_units(plans, world, rank)
    sources = recipe.data.sources
    total_input = sum(u.size for units in mine for u in units)
    meter = TaskProgress(
        f"curate task {rank}/{world}", total_input or None, progress_file(work, "curate", rank)
    )
    stats = []
    with atomic_dir(final) as tmp:
        sigs = SignatureRuns(tmp)
        for idx, src in enumerate(sources):
            held = [len(task_units(plans, world, r)[idx]) for r in range(world)]
            max_docs = split_budget(src.budget.docs, held, rank)
            max_bytes = split_budget(src.budget.bytes, held, rank)
            read, entry = ReadStats(), new_source_stats()
            with open(kept_file(tmp, idx), "w", encoding="utf-8") as kept:
                for unit, row, doc_id, raw in read_budgeted(
                    recipe, src, mine[idx], read, max_docs, max_bytes
                ):
                    key = doc_key(idx, unit.index, row)
                    status, detail, doc = process(idx, raw)
                    text = raw if doc is None else doc.text
                    nbytes = len(text.encode("utf-8"))
                    meter.update(1, len(raw.encode("utf-8")))
                    if status != "ok":
                        count_drop(entry, status, detail, key, doc_id, text, nbytes)
                        continue
                    write_kept(kept, key, doc_id, text)
                    entry["kept_docs"] += 1
                    entry["kept_bytes"] += nbytes
                    process.signatures(doc, key, sigs)
            entry["read"] = {
                "docs": read.docs,
                "bytes": read.bytes,
                "undecodable_bytes": read.undecodable_bytes,
                "files": sorted(set(read.files)),
                "input_bytes": read.input_bytes,
            }
            stats.append(entry)
        sigs.flush()
        write_stats(tmp, {"sources": stats, "signatures": sigs.records})
    meter.done()

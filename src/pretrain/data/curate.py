"""`pretrain curate RECIPE`: sources -> normalise -> filter -> dedup -> decontaminate -> weighted mix.

    pretrain curate recipes/tiny/config.yaml            # writes <output_dir>/mix/ + curation_report.{json,md}

Documents stream from each source in chunks to `data.workers` processes, which normalise, filter,
check contamination and compute dedup keys; the main process keeps the first copy of every exact
or near-duplicate cluster (in source order, so the result is deterministic) and spills survivors
to per-source work files. The mixture step then samples/upsamples those files to the requested
shares. Memory holds only dedup keys and document sizes, never the corpus.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from collections.abc import Iterator
from pathlib import Path

from pretrain.config import Recipe
from pretrain.data.curation_report import SourceReport, write_reports
from pretrain.data.dedup import NearDupIndex
from pretrain.data.mixio import MixWriter
from pretrain.data.mixture import plan_mixture, select
from pretrain.data.sources import ReadStats, iter_source
from pretrain.data.worker import init_worker, process_chunk
from pretrain.errors import DataError
from pretrain.progress import get_logger, human, progress

log = get_logger("pretrain.curate")
CHUNK_BYTES = 1 << 20


def _chunks(recipe: Recipe, stats: list[ReadStats]) -> Iterator[list[tuple[int, str, str]]]:
    for idx, src in enumerate(recipe.data.sources):
        chunk, size = [], 0
        for doc_id, text in iter_source(recipe, src, stats[idx]):
            chunk.append((idx, doc_id, text))
            size += len(text)
            if size >= CHUNK_BYTES or len(chunk) >= 512:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk


def _task_texts(recipe: Recipe) -> dict[str, list[str]]:
    if not recipe.data.decontaminate.enabled:
        return {}
    from pretrain.evaluation.benchmarks import decontamination_texts

    return decontamination_texts(recipe)


def curate(recipe: Recipe, out: Path) -> dict:
    data = recipe.data
    sources = data.sources
    reports = [SourceReport(s.name, s.type, s.weight) for s in sources]
    stats = [ReadStats() for _ in sources]
    task_texts = _task_texts(recipe)
    work = out / ".work"
    work.mkdir()
    spill = [open(work / f"{i}.jsonl", "w", encoding="utf-8") for i in range(len(sources))]
    sizes: list[list[int]] = [[] for _ in sources]
    seen_exact: set[bytes] = set()
    near = NearDupIndex()
    init_args = (
        [(s.filters, tuple(getattr(s, "strip_patterns", ()))) for s in sources],
        data.normalize,
        data.dedup,
        task_texts,
        data.decontaminate.ngram,
    )
    workers = max(1, data.workers)
    pool = mp.get_context("fork").Pool(workers, init_worker, init_args) if workers > 1 else None
    if pool is None:
        init_worker(*init_args)
    try:
        results = (
            pool.imap(process_chunk, _chunks(recipe, stats))
            if pool
            else map(process_chunk, _chunks(recipe, stats))
        )
        for chunk in progress(results, desc="curate", unit="chunk"):
            for idx, doc_id, status, detail, text, ekey, bands in chunk:
                rep = reports[idx]
                if status == "ok" and data.dedup.exact and ekey in seen_exact:
                    status, detail = "exact_dup", ""
                elif (
                    status == "ok"
                    and data.dedup.near
                    and bands
                    and (twin := near.check_and_add(doc_id, bands))
                ):
                    status, detail = "near_dup", twin
                if status != "ok":
                    rep.drop(status, detail, doc_id, text)
                    continue
                seen_exact.add(ekey)
                spill[idx].write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                sizes[idx].append(len(text.encode("utf-8")))
    finally:
        if pool:
            pool.terminate()
        for fh in spill:
            fh.close()
    for rep, st in zip(reports, stats):
        rep.read_docs, rep.read_bytes, rep.undecodable_bytes, rep.files = (
            st.docs,
            st.bytes,
            st.undecodable_bytes,
            len(st.files),
        )
    _check_nonempty(recipe, reports, sizes)
    summary = _write_mix(recipe, out, work, reports, sizes)
    shutil.rmtree(work)
    write_reports(out, recipe, reports, task_texts)
    return summary


def _check_nonempty(recipe: Recipe, reports: list[SourceReport], sizes: list[list[int]]) -> None:
    for src, rep, s in zip(recipe.data.sources, reports, sizes):
        if rep.read_docs == 0:
            raise DataError(f"source {src.name!r}: produced no documents (check its paths / split / budget)")
        if not s:
            top = ", ".join(
                f"{k}: {v['docs']}" for k, v in sorted(rep.dropped.items(), key=lambda kv: -kv[1]["docs"])[:3]
            )
            raise DataError(
                f"source {src.name!r}: all {rep.read_docs} documents were removed ({top}); "
                f"relax data.sources.{recipe.data.sources.index(src)}.filters or remove the source"
            )


def _target_bytes(recipe: Recipe) -> int | None:
    mix = recipe.data.mixture
    if mix.target_bytes:
        return mix.target_bytes
    if mix.target_tokens:
        return int(mix.target_tokens * mix.bytes_per_token)
    return None


def _write_mix(
    recipe: Recipe, out: Path, work: Path, reports: list[SourceReport], sizes: list[list[int]]
) -> dict:
    sources = recipe.data.sources
    plans = plan_mixture(
        {s.name: s.weight for s in sources},
        {s.name: sum(sz) for s, sz in zip(sources, sizes)},
        {s.name: s.max_epochs for s in sources},
        _target_bytes(recipe),
    )
    writer = MixWriter(out, shard_docs=recipe.data.mixture.shard_docs)
    total_bytes = 0
    for idx, (src, plan) in enumerate(zip(sources, plans)):
        picks = select(sizes[idx], plan.target_bytes, seed=recipe.seed + idx)
        by_rep: dict[int, set[int]] = {}
        for doc_index, rep in picks:
            by_rep.setdefault(rep, set()).add(doc_index)
        written = 0
        for rep in sorted(by_rep):
            wanted = by_rep[rep]
            with open(work / f"{idx}.jsonl", encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i in wanted:
                        rec = json.loads(line)
                        doc_id = rec["id"] if rep == 0 else f"{rec['id']}#rep{rep}"
                        writer.write({"id": doc_id, "source": src.name, "text": rec["text"]})
                        written += sizes[idx][i]
        reports[idx].set_mixed(len(picks), written, plan)
        total_bytes += written
    for rep in reports:
        rep.achieved_share = rep.mixed_bytes / total_bytes if total_bytes else 0.0
        if rep.capped:
            log.warning(
                "source %r: only %s clean bytes; capped at max_epochs, its share falls short",
                rep.name,
                human(rep.kept_bytes, "B"),
            )
    writer.close(
        {
            "seed": recipe.seed,
            "total_docs": sum(r.mixed_docs for r in reports),
            "total_bytes": total_bytes,
            "sources": {r.name: r.mixture_entry() for r in reports},
        }
    )
    return {"docs": sum(r.mixed_docs for r in reports), "bytes": total_bytes, "sources": len(reports)}

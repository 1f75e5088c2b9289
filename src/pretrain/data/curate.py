"""`pretrain curate RECIPE`: sources -> normalise -> filter -> dedup -> decontaminate -> weighted mix.

    pretrain curate recipes/tiny/config.yaml            # writes <output_dir>/mix/ + curation_report.{json,md}

The per-document work (worker.py) runs as `data.executor.tasks` shards on a datatrove executor
(executor.py: local processes, Ray, or a Slurm job array). `merge_and_mix` then reads the shards back in
document order, keeps the first copy of every exact or near-duplicate cluster (so the result is
deterministic and independent of the number of shards), and samples/upsamples the survivors to the
requested shares. Memory holds only dedup keys and document sizes, never the corpus.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from pretrain.config import LocalSource, Recipe
from pretrain.core.errors import DataError
from pretrain.core.markers import StageOutput, files_signature
from pretrain.core.progress import get_logger, human, progress
from pretrain.data.curation_report import REPORT_FILES, SourceReport, write_reports
from pretrain.data.dedup import NearDupIndex
from pretrain.data.executor import pass_tasks, prepare_work, run_document_pass, submit_slurm
from pretrain.data.mixio import MixWriter
from pretrain.data.mixture import plan_mixture, select
from pretrain.data.records import iter_merged, read_stats
from pretrain.data.worker import TASK_TEXTS, UNCHECKED

log = get_logger("pretrain.curate")


def fingerprint_inputs(recipe: Recipe) -> dict:
    """What curation reads: the data section (less what only later stages or the speed depend on),
    the local files' sizes and mtimes, and the evaluation tasks it decontaminates against."""
    # val_fraction is read by `pack`; workers and the executor change speed, not output (tested)
    data = recipe.data.model_dump(mode="json", exclude={"val_fraction", "workers", "executor"})
    patterns = [
        str(recipe.resolve_path(p))
        for s in recipe.data.sources
        if isinstance(s, LocalSource)
        for p in s.paths
    ]
    patterns += [str(recipe.resolve_path(t.path)) for t in recipe.eval.local_tasks]
    return {
        "seed": recipe.seed,
        "data": data,
        "files": files_signature(patterns),
        "eval_tasks": recipe.eval.tasks,
    }


def curate(recipe: Recipe, out: StageOutput) -> dict:
    """Stage function: the document pass on the recipe's executor, then merge, mix and publish `out`.

    On Slurm this submits the jobs (the last one publishes) and raises `CurationSubmitted`.
    """
    work = recipe.layout.curate_work
    if recipe.data.executor.type == "slurm":
        submit_slurm(recipe, work, functools.partial(publish_mix, recipe, work, pass_tasks(recipe), out))
    prepare_work(recipe, work)
    tasks = run_document_pass(recipe, work)
    return publish_mix(recipe, work, tasks, out)


def publish_mix(recipe: Recipe, work: Path, tasks: int, out: StageOutput) -> dict:
    """Step 2: merge the finished shards, publish mix/ with its marker, copy the reports to the run folder."""
    summary = out.publish(lambda tmp: merge_and_mix(recipe, work, tasks, tmp))
    layout = recipe.layout
    for name, copy in zip(REPORT_FILES, (layout.curation_report_json, layout.curation_report_md)):
        shutil.copy2(out.folder / name, copy)
    # shards and survivors go; a Slurm run keeps its jobs' logs for inspection
    for path in work.iterdir():
        if path.name != "logs" or recipe.data.executor.type != "slurm":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not any(work.iterdir()):
        work.rmdir()
    return summary


def merge_and_mix(recipe: Recipe, work: Path, tasks: int, out: Path) -> dict:
    """Step 2: dedup across shards in document order, write the mix and the reports into `out`."""
    data = recipe.data
    sources = data.sources
    reports = [SourceReport(s.name, s.type, s.weight) for s in sources]
    texts = json.loads((work / TASK_TEXTS).read_text(encoding="utf-8"))
    unchecked = json.loads((work / UNCHECKED).read_text(encoding="utf-8"))
    spill = [open(work / f"kept-{i}.jsonl", "w", encoding="utf-8") for i in range(len(sources))]
    sizes: list[list[int]] = [[] for _ in sources]
    seen_exact: set[str] = set()
    near = NearDupIndex()
    try:
        for record in progress(iter_merged(work, tasks), desc="merge", unit="doc"):
            rep, status, detail = reports[record.source_idx], record.status, record.detail
            if status == "ok" and data.dedup.exact and record.exact_key in seen_exact:
                status, detail = "exact_dup", ""
            elif (
                status == "ok"
                and data.dedup.near
                and record.band_keys
                and (twin := near.check_and_add(record.doc_id, record.band_keys))
            ):
                status, detail = "near_dup", twin
            if status != "ok":
                rep.drop(status, detail, record.doc_id, record.text, record.bytes)
                continue
            seen_exact.add(record.exact_key)
            kept = {"id": record.doc_id, "text": record.text}
            spill[record.source_idx].write(json.dumps(kept, ensure_ascii=False) + "\n")
            sizes[record.source_idx].append(record.bytes)
    finally:
        for fh in spill:
            fh.close()
    # every shard read the same documents, so shard 0's counts are the sources'
    for rep, counts in zip(reports, read_stats(work, 0)):
        rep.read_docs, rep.read_bytes = counts.docs, counts.bytes
        rep.undecodable_bytes, rep.files = counts.undecodable_bytes, counts.files
    _check_nonempty(recipe, reports, sizes)
    summary = _write_mix(recipe, out, work, reports, sizes)
    write_reports(out, recipe, reports, texts, unchecked)
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
            with open(work / f"kept-{idx}.jsonl", encoding="utf-8") as fh:
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

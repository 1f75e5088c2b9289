"""`pretrain curate RECIPE`: sources -> normalise -> filter -> decontaminate -> dedup -> the clean mix.

    pretrain curate recipes/tiny/config.yaml            # writes <output_dir>/mix/ + curation_report.{json,md}

Curation runs as sharded steps on the recipe's datatrove executor (executor.py), none of which holds the
corpus: the document pass (worker.py: each task reads only its units of each source), dedup in key-range
buckets and one clustering step over the duplicate edges (dedup.py), and the filter step that writes each
task's surviving documents as mix files (mixio.py). The publish step only moves those files and writes the
manifest and the reports from the tasks' statistics. Within a cluster of duplicates the document first in
corpus order is kept, so — budgets aside, which are split over the tasks — the mix is the same for any number
of tasks. The mixture weights are applied in tokens by `pretrain pack`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np

from pretrain.config import LocalSource, Recipe
from pretrain.core.atomic import atomic_dir
from pretrain.core.errors import DataError
from pretrain.core.markers import StageOutput, files_signature
from pretrain.core.progress import get_logger
from pretrain.core.slurm import SUBMITTED, SubmittedJobs
from pretrain.data.curation_report import REPORT_FILES, SourceReport, merge_dropped, write_reports
from pretrain.data.dedup import bucket_count, cluster_duplicates, find_duplicates, is_removed, load_removed
from pretrain.data.executor import TaskStep, begin_publish, pass_tasks, prepare_work, run_steps, submit_slurm
from pretrain.data.mixio import MixWriter, write_manifest
from pretrain.data.provenance import source_provenance
from pretrain.data.records import (
    REMOVED_DTYPE,
    dedup_dir,
    final_dir,
    is_done,
    iter_kept,
    kept_file,
    pass_dir,
    read_stats,
    removed_file,
    write_stats,
    write_units,
)
from pretrain.data.sources import plan_units
from pretrain.data.worker import TASK_TEXTS, UNCHECKED, count_drop, document_pass
from pretrain.evaluation.benchmarks import decontamination_texts

log = get_logger("pretrain.curate")
DUP_CLASSES = {0: "exact_dup", 1: "near_dup"}


# read by `pack` (val_fraction, mixture) or speed only (workers, executor; tested — except that budgets are split
# over the tasks), and a source's declared licence (provenance: the mix stays current when one is added)
NOT_CURATION_INPUTS = {k: True for k in ("val_fraction", "workers", "executor", "mixture")} | {
    "sources": {"__all__": {"license"}}
}


def fingerprint_inputs(recipe: Recipe) -> dict:
    """What curation reads: the data section (less what only later stages or the speed depend on),
    the local files' sizes and mtimes, and the evaluation tasks it decontaminates against."""
    data = recipe.data.model_dump(mode="json", exclude=NOT_CURATION_INPUTS)
    patterns = [
        str(recipe.resolve_path(p))
        for s in recipe.data.sources
        if isinstance(s, LocalSource)
        for p in s.paths
    ]
    patterns += [str(recipe.resolve_path(t.path)) for t in recipe.eval.local_tasks]
    out = {
        "seed": recipe.seed,
        "data": data,
        "files": files_signature(patterns),
        "eval_tasks": recipe.eval.tasks,
    }
    if any(s.budget.docs or s.budget.bytes for s in recipe.data.sources):
        out["tasks"] = pass_tasks(recipe)
    return out


def _dedup_on(recipe: Recipe) -> bool:
    return recipe.data.dedup.exact or recipe.data.dedup.near


def curation_steps(recipe: Recipe, work: Path) -> list[TaskStep]:
    tasks = pass_tasks(recipe)
    steps = [
        TaskStep(
            "pass", tasks, functools.partial(document_pass, recipe, work), functools.partial(_pass_done, work)
        )
    ]
    if _dedup_on(recipe):
        steps += [
            TaskStep(
                "dedup-buckets",
                tasks,
                functools.partial(dedup_buckets, work),
                functools.partial(_buckets_done, work),
            ),
            TaskStep(
                "dedup-cluster",
                1,
                functools.partial(dedup_cluster, work, tasks),
                lambda rank: removed_file(work).exists(),
            ),
        ]
    steps.append(
        TaskStep(
            "mix-files",
            tasks,
            functools.partial(write_mix_files, recipe, work),
            functools.partial(_final_done, work),
        )
    )
    return steps


def _pass_done(work: Path, rank: int) -> bool:
    return is_done(pass_dir(work, rank))


def _final_done(work: Path, rank: int) -> bool:
    return is_done(final_dir(work, rank))


def _buckets_marker(work: Path, rank: int) -> Path:
    return dedup_dir(work) / f"buckets-t{rank:05d}.done"


def _buckets_done(work: Path, rank: int) -> bool:
    return _buckets_marker(work, rank).exists()


def _signature_buckets(work: Path, tasks: int) -> int:
    records = sum(read_stats(pass_dir(work, r))["signatures"] for r in range(tasks))
    return bucket_count(records, tasks)


def dedup_buckets(work: Path, rank: int, world: int) -> None:
    """Task `rank`: buckets rank, rank + world, ... of the key space, one at a time (bounded memory)."""
    if _buckets_done(work, rank):
        return
    dedup_dir(work).mkdir(exist_ok=True)
    buckets = _signature_buckets(work, world)
    for bucket in range(rank, buckets, world):
        find_duplicates(work, bucket, buckets)
    _buckets_marker(work, rank).write_text(str(buckets))


def dedup_cluster(work: Path, tasks: int, rank: int = 0, world: int = 1) -> None:
    """The one clustering task: union the duplicate edges of every bucket into the removed documents. `tasks`
    is the pass's task count (`pass_tasks`), whose statistics sized the buckets."""
    if removed_file(work).exists():
        return
    cluster_duplicates(work, _signature_buckets(work, tasks))


def write_mix_files(recipe: Recipe, work: Path, rank: int, world: int) -> None:
    """Task `rank`: its kept documents less the removed duplicates, as mix files (+ stats.json)."""
    final = final_dir(work, rank)
    if is_done(final):
        return
    removed = load_removed(work) if _dedup_on(recipe) else np.empty(0, dtype=REMOVED_DTYPE)
    with atomic_dir(final) as tmp:
        stats = []
        for idx, src in enumerate(recipe.data.sources):
            writer = MixWriter(tmp, src.name, rank, recipe.data.mixture.shard_docs)
            entry: dict = {"dropped": {}}
            for key, doc_id, text in iter_kept(kept_file(pass_dir(work, rank), idx)):
                kind = is_removed(removed, key)
                if kind is not None:
                    count_drop(entry, DUP_CLASSES[kind], "", key, doc_id, text, len(text.encode("utf-8")))
                    continue
                writer.write({"key": key, "id": doc_id, "source": src.name, "text": text})
            entry["shards"] = writer.close()
            stats.append(entry)
        write_stats(tmp, {"sources": stats})


def prepare_inputs(recipe: Recipe, work: Path, fingerprint: str) -> None:
    """The work folder with the evaluation tasks' texts and the sources' units (kept when resuming)."""
    if not prepare_work(work, fingerprint) and (work / "units.json").exists():
        return
    texts, unchecked = {}, {}
    if recipe.data.decontaminate.enabled:
        texts, unchecked = decontamination_texts(recipe)
    for task, why in unchecked.items():
        log.warning("decontamination: task %r not checked (%s)", task, why)
    (work / TASK_TEXTS).write_text(json.dumps(texts), encoding="utf-8")
    (work / UNCHECKED).write_text(json.dumps(unchecked), encoding="utf-8")
    write_units(work, plan_units(recipe))


def curate(recipe: Recipe, out: StageOutput) -> dict:
    """Stage function: the curation steps on the recipe's executor, then publish `out`.

    On Slurm this submits the jobs (the last one publishes) and raises `CurationSubmitted`.
    """
    work = recipe.layout.curate_work
    steps = curation_steps(recipe, work)
    if recipe.data.executor.type == "slurm":
        if SubmittedJobs(work / SUBMITTED).pending() is None:
            prepare_inputs(recipe, work, out.fingerprint)
        submit_slurm(recipe, work, "curate", steps, functools.partial(publish_mix, recipe, work, out))
    prepare_inputs(recipe, work, out.fingerprint)
    run_steps(recipe, work, "curate", steps)
    return publish_mix(recipe, work, out)


def publish_mix(recipe: Recipe, work: Path, out: StageOutput) -> dict:
    """The last step: move the mix files into place, write manifest and reports, publish with the marker."""
    begin_publish(work)
    summary = out.publish(lambda tmp: assemble_mix(recipe, work, pass_tasks(recipe), tmp))
    layout = recipe.layout
    for name, copy in zip(REPORT_FILES, (layout.curation_report_json, layout.curation_report_md)):
        shutil.copy2(out.folder / name, copy)
    # scratch goes; a Slurm run keeps its jobs' logs for inspection
    for path in work.iterdir():
        if path.name != "logs" or recipe.data.executor.type != "slurm":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not any(work.iterdir()):
        work.rmdir()
    return summary


def assemble_mix(recipe: Recipe, work: Path, tasks: int, out: Path) -> dict:
    """Move every task's mix files into `out`; manifest and reports from the tasks' statistics only."""
    sources = recipe.data.sources
    reports = [SourceReport(s.name, s.type, s.weight) for s in sources]
    dropped: list[dict] = [{} for _ in sources]
    shards: list[list[dict]] = [[] for _ in sources]
    for rank in range(tasks):
        passed, final = read_stats(pass_dir(work, rank)), read_stats(final_dir(work, rank))
        for idx, (p, f) in enumerate(zip(passed["sources"], final["sources"])):
            rep = reports[idx]
            rep.read_docs += p["read"]["docs"]
            rep.read_bytes += p["read"]["bytes"]
            rep.undecodable_bytes += p["read"]["undecodable_bytes"]
            rep.files += len(p["read"]["files"])
            rep.input_bytes += p["read"].get("input_bytes", 0)
            merge_dropped(dropped[idx], p["dropped"])
            merge_dropped(dropped[idx], f["dropped"])
            for shard in f["shards"]:
                (out / shard["file"]).parent.mkdir(parents=True, exist_ok=True)
                os.replace(final_dir(work, rank) / shard["file"], out / shard["file"])
                shards[idx].append(shard)
    total_w = sum(s.weight for s in sources)
    manifest_sources = {}
    for idx, (src, rep) in enumerate(zip(sources, reports)):
        for entry in dropped[
            idx
        ].values():  # the same examples for any number of tasks: first in corpus order
            entry["examples"] = [
                {k: v for k, v in e.items() if k != "key"}
                for e in sorted(entry["examples"], key=lambda e: e["key"])[:3]
            ]
        rep.dropped = dropped[idx]
        docs, nbytes = sum(s["docs"] for s in shards[idx]), sum(s["bytes"] for s in shards[idx])
        rep.set_kept(docs, nbytes, src.weight / total_w)
        manifest_sources[src.name] = {
            "weight": src.weight,
            "share": round(src.weight / total_w, 6),
            "max_epochs": src.max_epochs,
            "docs": docs,
            "bytes": nbytes,
            "shards": shards[idx],
        }
    _check_nonempty(recipe, reports)
    total = sum(r.kept_bytes for r in reports)
    for rep in reports:
        rep.achieved_share = rep.kept_bytes / total if total else 0.0
    write_manifest(out, manifest_sources, recipe.seed)
    texts = json.loads((work / TASK_TEXTS).read_text(encoding="utf-8"))
    unchecked = json.loads((work / UNCHECKED).read_text(encoding="utf-8"))
    provenance = [source_provenance(recipe, src) for src in sources]
    write_reports(out, recipe, reports, texts, unchecked, provenance)
    return {"docs": sum(r.kept_docs for r in reports), "bytes": total, "sources": len(reports)}


def _check_nonempty(recipe: Recipe, reports: list[SourceReport]) -> None:
    for idx, (src, rep) in enumerate(zip(recipe.data.sources, reports)):
        if rep.read_docs == 0:
            raise DataError(f"source {src.name!r}: produced no documents (check its paths / split / budget)")
        if not rep.kept_docs:
            top = ", ".join(
                f"{k}: {v['docs']}" for k, v in sorted(rep.dropped.items(), key=lambda kv: -kv[1]["docs"])[:3]
            )
            raise DataError(
                f"source {src.name!r}: all {rep.read_docs} documents were removed ({top}); "
                f"relax data.sources.{idx}.filters or remove the source"
            )

"""Where curation runs: datatrove executors over one two-step pipeline.

    step 1  DocumentPass   `data.executor.tasks` shards in parallel (worker.py): normalise, filter,
                           decontaminate, hash -> <work>/pass-<rank>.jsonl
    step 2  PublishMix     one task after all shards: merge in document order, drop duplicate clusters,
                           build the mixture and reports, publish <output_dir>/mix/ atomically

`local` runs step 1 on datatrove's LocalPipelineExecutor (`data.workers` processes) and step 2 in this
process. `ray` runs step 1 on RayPipelineExecutor (`pip install ray`, a running cluster) and step 2 here.
`slurm` submits step 1 as a job array and step 2 as a job depending on it (SlurmPipelineExecutor), then
returns: the work folder and the output dir must be on a filesystem the nodes share, and `pretrain run`
picks the mix up once the jobs are done. The mix is the same for any executor and number of tasks.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.errors import CurationSubmitted, DataError
from pretrain.core.progress import get_logger
from pretrain.data.records import stats_file
from pretrain.data.worker import TASK_TEXTS, UNCHECKED, document_pass
from pretrain.evaluation.benchmarks import decontamination_texts

log = get_logger("pretrain.curate")


class DocumentPass:
    """Datatrove pipeline step 1: shard `rank` of `world_size` of the per-document work."""

    def __init__(self, recipe: Recipe, work: Path):
        self.recipe, self.work = recipe, work

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        document_pass(self.recipe, self.work, rank, world_size)
        return data


class PublishMix:
    """Datatrove pipeline step 2 (one task, Slurm path): `publish()` merges the shards and publishes `mix/`.

    `publish` is a picklable callable (curate.publish_mix bound to the recipe, work folder and stage output).
    """

    def __init__(self, publish: Callable[[], object]):
        self.publish = publish

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        self.publish()
        return data


@contextlib.contextmanager
def _datatrove_logs_to_files(logs: Path) -> Iterator[None]:
    """Local runs: datatrove's task logs (and its re-logging of our errors with a traceback) go to files only.

    The terminal keeps our progress lines and one-line errors; `<work>/logs` (removed with the work folder
    on success) has datatrove's full logs while a run is in progress or after it failed.
    """
    import datatrove.executor.base as base
    from loguru import logger

    def file_only(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
        logger.remove()
        logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
        logger.add(logfile, level="DEBUG")
        return logfile

    def close_quietly(logfile) -> None:  # datatrove's own re-adds a stderr handler
        logger.complete()
        logger.remove()
        logfile.close()

    originals = {
        name: getattr(base, name) for name in ("add_task_logger", "close_task_logger") if hasattr(base, name)
    }
    base.add_task_logger, base.close_task_logger = (
        file_only,
        close_quietly,
    )  # forked task processes inherit them
    logs.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(str(logs / "executor.log"), level="INFO")
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(base, name, fn)
        logger.remove()  # our sink, or whatever an in-process task (workers: 1) left
        logger.add(sys.stderr, level="WARNING")


def pass_tasks(recipe: Recipe) -> int:
    return recipe.data.executor.tasks or recipe.data.workers


def prepare_work(recipe: Recipe, work: Path) -> None:
    """Create the work folder with the texts of the evaluation tasks to decontaminate against."""
    texts, unchecked = {}, {}
    if recipe.data.decontaminate.enabled:
        texts, unchecked = decontamination_texts(recipe)
    for task, why in unchecked.items():
        log.warning("decontamination: task %r not checked (%s)", task, why)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / TASK_TEXTS).write_text(json.dumps(texts), encoding="utf-8")
    (work / UNCHECKED).write_text(json.dumps(unchecked), encoding="utf-8")


def run_document_pass(recipe: Recipe, work: Path) -> int:
    """Step 1 on the local or Ray executor (blocking); returns the number of shards."""
    cfg, tasks = recipe.data.executor, pass_tasks(recipe)
    step, logs = DocumentPass(recipe, work), work / "logs"
    if cfg.type == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DataError("data.executor.type: ray needs Ray installed (`pip install ray`)") from None
        from datatrove.executor import RayPipelineExecutor

        executor = RayPipelineExecutor(
            pipeline=[step],
            tasks=tasks,
            cpus_per_task=cfg.ray_cpus_per_task,
            logging_dir=str(logs),
            skip_completed=False,
        )
    else:
        from datatrove.executor import LocalPipelineExecutor

        executor = LocalPipelineExecutor(
            pipeline=[step],
            tasks=tasks,
            workers=min(tasks, recipe.data.workers),
            logging_dir=str(logs),
            skip_completed=False,
            start_method="fork",
        )
    with _datatrove_logs_to_files(logs):
        executor.run()
    missing = [r for r in range(tasks) if not stats_file(work, r).exists()]
    if missing:
        raise DataError(f"curation shards {missing[:5]} did not finish; their logs are under {logs}")
    return tasks


def slurm_executors(recipe: Recipe, work: Path, publish: Callable[[], object]):
    """(document pass job array, publish job depending on it) — built, not submitted."""
    from datatrove.executor import SlurmPipelineExecutor

    cfg, tasks = recipe.data.executor, pass_tasks(recipe)
    s = cfg.slurm
    common = {
        "time": s.time,
        "partition": s.partition,
        "mem_per_cpu_gb": s.mem_per_cpu_gb,
        "qos": s.qos,
        "venv_path": s.venv_path,
        "sbatch_args": dict(s.sbatch_args),
    }
    document_pass_job = SlurmPipelineExecutor(
        pipeline=[DocumentPass(recipe, work)],
        tasks=tasks,
        cpus_per_task=s.cpus_per_task,
        job_name=f"{recipe.name}-curate",
        logging_dir=str(work / "logs" / "pass"),
        **common,
    )
    publish_job = SlurmPipelineExecutor(
        pipeline=[PublishMix(publish)],
        tasks=1,
        cpus_per_task=1,
        job_name=f"{recipe.name}-mix",
        logging_dir=str(work / "logs" / "publish"),
        depends=document_pass_job,
        **common,
    )
    return document_pass_job, publish_job


def submit_slurm(recipe: Recipe, work: Path, publish: Callable[[], object]) -> None:
    """Submit the document pass as a job array and `publish` as a job depending on it; raises CurationSubmitted."""
    submitted = work / "submitted.json"
    if submitted.exists():  # a second `pretrain run` while the jobs are queued must not resubmit them
        jobs = json.loads(submitted.read_text())
        raise CurationSubmitted(
            f"curation jobs {jobs['pass_job']} and {jobs['publish_job']} were submitted at {jobs['at']} and have not "
            f"published {recipe.layout.mix} yet; wait for them (squeue), or delete {work} to submit again"
        )
    prepare_work(recipe, work)
    document_pass_job, publish_job = slurm_executors(recipe, work, publish)
    publish_job.run()  # submits its dependency first
    submitted.write_text(
        json.dumps(
            {
                "pass_job": document_pass_job.job_id,
                "publish_job": publish_job.job_id,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
    )
    raise CurationSubmitted(
        f"curation submitted to Slurm: {document_pass_job.tasks} document-pass tasks (job {document_pass_job.job_id}) "
        f"then the mix (job {publish_job.job_id}); logs under {work / 'logs'}. When they finish, run "
        f"`pretrain run {recipe.source_label}` again — curate is then up to date and skipped"
    )

"""Where the data stages run: datatrove executors over a chain of sharded steps.

A data stage is a list of `TaskStep`s, each `tasks` wide, that run one after the other:

    curate   pass (N) -> dedup buckets (N) -> dedup cluster (1) -> filter + write mix files (N) -> publish
    pack     tokenize + sample towards the token targets (N) -> publish manifest and report

`local` runs each step on datatrove's LocalPipelineExecutor (`data.workers` processes, on a pool that fails
the step within seconds when a worker dies: data/local_pool.py) and the publish step in this process; `ray` runs each step on RayPipelineExecutor (`pip install ray`, a running cluster or a
local one); `slurm` submits each step as a job array depending on the previous one, the publish step last,
and returns (the work folder and the output dir must be on a filesystem the nodes share; `pretrain run`
picks the output up once the jobs are done). Every task writes its output through a temporary name renamed
into place, so a killed task publishes nothing, and a task whose output exists is skipped: a rerun resumes.
The output is the same for any executor.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.errors import CurationSubmitted, DataError
from pretrain.core.progress import get_logger
from pretrain.core.slurm import SUBMITTED, SlurmStep, SubmittedJobs, slurm_chain, submit_chain
from pretrain.data.local_pool import WatchedLocalExecutor, WorkerDied
from pretrain.data.taskprogress import TotalProgress

log = get_logger("pretrain.data")
WORK_FINGERPRINT = "FINGERPRINT"
WORK_PUBLISHING = "PUBLISHING"  # written before publishing moves the tasks' outputs away (see begin_publish)


@dataclass
class TaskStep:
    """A datatrove pipeline step: `run(rank, world)` for task `rank` of `tasks`; `done(rank)` once finished."""

    name: str
    tasks: int
    run: Callable[[int, int], object]
    done: Callable[[int], bool]

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        if not self.done(rank):  # a rerun after a failure runs only what is left
            self.run(rank, world_size)
        return data


class PublishStep:
    """The last step (one task): `publish()` writes the stage's output from the tasks' statistics."""

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


def prepare_work(work: Path, fingerprint: str) -> bool:
    """Keep `work` when it was started for the same inputs (a rerun resumes it), else start it afresh.

    Returns True when the folder was (re)created.
    """
    stamp = work / WORK_FINGERPRINT
    if stamp.exists() and stamp.read_text() == fingerprint and not (work / WORK_PUBLISHING).exists():
        return False
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stamp.write_text(fingerprint)
    return True


def begin_publish(work: Path) -> None:
    """Mark `work` as being published: publishing moves the tasks' outputs out of it, so a run killed before
    `work` is removed must not resume from completion markers whose files have moved (`prepare_work` then starts
    the work afresh)."""
    (work / WORK_PUBLISHING).touch()


def remove_partial_outputs(work: Path) -> None:
    """Delete what killed tasks left half-written (`*.tmp-*` folders and files: core/atomic.py, records.save_array):
    a SIGKILL skips their clean-up. Called before tasks start, when none of this work's tasks runs."""
    for partial in sorted(work.rglob("*.tmp-*"), reverse=True):  # children before their folders
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def _executor(recipe: Recipe, step: TaskStep, logs: Path):
    cfg = recipe.data.executor
    if cfg.type == "ray":
        try:
            import ray
        except ImportError:
            raise DataError("data.executor.type: ray needs Ray installed (`pip install ray`)") from None
        from datatrove.executor import RayPipelineExecutor

        if not ray.is_initialized():
            # connects to the cluster named by RAY_ADDRESS, or starts a local one on this machine
            ray.init(log_to_driver=False, include_dashboard=False)
        return RayPipelineExecutor(
            pipeline=[step],
            tasks=step.tasks,
            cpus_per_task=cfg.ray_cpus_per_task,
            logging_dir=str(logs),
            skip_completed=False,
        )
    return WatchedLocalExecutor(
        pipeline=[step],
        tasks=step.tasks,
        workers=min(step.tasks, recipe.data.workers),
        logging_dir=str(logs),
        skip_completed=False,
        start_method="fork",
    )


def run_steps(recipe: Recipe, work: Path, stage: str, steps: list[TaskStep]) -> None:
    """Run the steps in order on the local or Ray executor (blocking), skipping tasks already done."""
    remove_partial_outputs(work)
    for step in steps:
        todo = [r for r in range(step.tasks) if not step.done(r)]
        if not todo:
            continue
        logs = work / "logs" / step.name
        if logs.exists():
            shutil.rmtree(logs)  # datatrove's own completion records: ours (step.done) decide what reruns
        failure = ""
        with _datatrove_logs_to_files(logs), TotalProgress(work / "progress", step.name, step.tasks):
            try:
                _executor(recipe, step, logs).run()
            except DataError:
                raise
            except (
                Exception
            ) as exc:  # a task failed or a worker died: what is done stays done, the rest reruns
                failure = f" ({exc})" if isinstance(exc, WorkerDied) else f" ({type(exc).__name__}: {exc})"
        missing = [r for r in range(step.tasks) if not step.done(r)]
        if missing:
            raise DataError(
                f"{stage}: {step.name} tasks {missing[:5]} did not finish{failure}; their logs are under {logs}; "
                "run again to resume (finished tasks are kept)"
            )


def slurm_jobs(
    recipe: Recipe, work: Path, stage: str, steps: list[TaskStep], publish: Callable[[], object]
) -> list:
    """One job array per step, each depending on the previous one, the publish job last (not submitted)."""
    chain = [SlurmStep(step.name, step.tasks, [step]) for step in steps]
    chain.append(SlurmStep("publish", 1, [PublishStep(publish)]))
    return slurm_chain(recipe.data.executor.slurm, chain, f"{recipe.name}-{stage}", work / "logs")


def submit_slurm(
    recipe: Recipe, work: Path, stage: str, steps: list[TaskStep], publish: Callable[[], object]
) -> None:
    """Submit every step as a job array depending on the previous one, and `publish` last; raises CurationSubmitted."""
    guard = SubmittedJobs(work / SUBMITTED, error=CurationSubmitted)
    # a second `pretrain run` while the jobs are queued must not resubmit them
    guard.refuse_if_pending(stage, f"Or delete {work} to submit again")
    jobs = slurm_jobs(recipe, work, stage, steps, publish)
    submit_chain(jobs, guard)
    steps_text = ", then ".join(f"{job.job_name} ({job.tasks} tasks, job {job.job_id})" for job in jobs)
    raise CurationSubmitted(
        f"{stage} submitted to Slurm: {steps_text}; logs under {work / 'logs'}. When they finish, run "
        f"`pretrain run {recipe.source_label}` again — {stage} is then up to date and skipped"
    )

"""Every Slurm job this project submits: a chain of datatrove `SlurmPipelineExecutor` job arrays, and one guard.

    jobs = slurm_chain(settings, [SlurmStep("pass", 8, [task]), SlurmStep("publish", 1, [publish])], ...)
    ids = submit_chain(jobs, SubmittedJobs(work / "submitted.json"), what="curate")

The data stages (curation, packing) and the ladder (a task per size, then the fit) both describe their work as
steps, each a job array of `tasks` whose task `rank` calls `step(data, rank, world_size)` for every callable of
its pipeline, each step depending on the one before (`afterok`). datatrove pickles the executor and runs it on
the nodes (`launch_pickled_pipeline`), so the callables must pickle (dill). `SubmittedJobs` keeps the ids of a
submission that has not finished, so a second command while they are queued is refused instead of submitting
twice. A missing or failing `sbatch` is a one-line `SlurmError`.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import PretrainError

SUBMITTED = "submitted.json"


class SlurmError(PretrainError):
    """sbatch is missing or refused a job."""


class SlurmSettings(Protocol):
    """What every submission reads from a recipe's `slurm:` block (`config.data.SlurmConfig` has these)."""

    partition: str
    time: str
    qos: str
    cpus_per_task: int
    mem_per_cpu_gb: int
    venv_path: str | None
    sbatch_args: Mapping[str, str | int]


@dataclass
class SlurmStep:
    """One job array: `tasks` tasks, task `rank` calling each of `pipeline` as `step(data, rank, world_size)`."""

    name: str
    tasks: int
    pipeline: list[Callable]
    cpus_per_task: int | None = None
    """None: the settings' `cpus_per_task` (a single task gets 1 unless it says otherwise)."""
    gpus_per_task: int = 0


@dataclass
class SubmittedJobs:
    """`submitted.json`: the ids of a submission whose last job has not finished yet."""

    path: Path
    error: type[PretrainError] = field(default=PretrainError)
    """The error a pending submission raises (curation's says "submitted", which exits 0)."""

    def pending(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def refuse_if_pending(self, what: str, advice: str) -> None:
        jobs = self.pending()
        if jobs is not None:
            raise self.error(
                f"{what} jobs {', '.join(jobs['jobs'])} were submitted at {jobs['at']} and have not finished; "
                f"wait for them (squeue -j {','.join(jobs['jobs'])}). {advice}"
            )

    def record(self, ids: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"jobs": ids, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@functools.cache
def step_executor() -> type:
    """datatrove's `SlurmPipelineExecutor` without its stats-merging job: our steps keep their own records (one
    job per step, not two). Built on first use, so that datatrove is imported when something is submitted, not
    by every command; dill pickles the class with the executor for the nodes."""
    from datatrove.executor import SlurmPipelineExecutor

    class StepExecutor(SlurmPipelineExecutor):
        def launch_merge_stats(self) -> None:
            return None

    return StepExecutor


def slurm_chain(settings: SlurmSettings, steps: list[SlurmStep], job_prefix: str, logs: Path) -> list:
    """One datatrove executor per step, each depending on the previous one (nothing submitted yet); each
    step's script, pickled executor and logs go under `logs/<step name>/`."""
    executor = step_executor()
    venv = str(Path(settings.venv_path) / "bin" / "activate") if settings.venv_path else None
    jobs, previous = [], None
    for step in steps:
        cpus = step.cpus_per_task or (settings.cpus_per_task if step.tasks > 1 else 1)
        previous = executor(
            pipeline=step.pipeline,
            tasks=step.tasks,
            time=settings.time,
            partition=settings.partition,
            cpus_per_task=cpus,
            mem_per_cpu_gb=settings.mem_per_cpu_gb,
            gpus_per_task=step.gpus_per_task,
            job_name=f"{job_prefix}-{step.name}",
            qos=settings.qos,
            venv_path=venv,  # datatrove sources this file
            sbatch_args=dict(settings.sbatch_args),
            logging_dir=str(logs / step.name),
            depends=previous,
            skip_completed=False,  # the steps' own completion records decide what reruns
        )
        jobs.append(previous)
    return jobs


def submit_chain(jobs: list, guard: SubmittedJobs) -> list[str]:
    """Submit the chain (the last job submits its dependencies first); returns the job ids, recorded in `guard`."""
    try:
        jobs[-1].run()
    except FileNotFoundError:
        raise SlurmError(
            "sbatch is not on PATH; submit from a Slurm login node, or set the executor to local"
        ) from None
    except subprocess.CalledProcessError as exc:
        detail = " ".join(((exc.stderr or exc.output or b"").decode(errors="replace")).split())
        raise SlurmError(f"sbatch failed: {detail or f'exit status {exc.returncode}'}") from None
    ids = [str(job.job_id) for job in jobs]
    guard.record(ids)
    return ids

"""Every Slurm job this project submits: a chain of datatrove `SlurmPipelineExecutor` job arrays, and one guard.

    jobs = slurm_chain(settings, [SlurmStep("pass", 8, [task]), SlurmStep("publish", 1, [publish])], ...)
    ids = submit_chain(jobs, SubmittedJobs(work / "submitted.json"), what="curate")

The data stages (curation, packing) and the ladder (a task per size, then the fit) both describe their work as
steps, each a job array of `tasks` whose task `rank` calls `step(data, rank, world_size)` for every callable of
its pipeline, each step depending on the one before (`afterok`). datatrove pickles the executor and runs it on
the nodes (`launch_pickled_pipeline`), so the callables must pickle (dill). `SubmittedJobs` keeps the ids of a
submission that has not finished, so a second command while they are queued is refused instead of submitting
twice. A missing or failing `sbatch` is a one-line `SlurmError` carrying what sbatch said on stderr (`sbatch`
below replaces datatrove's submitter, which captured only stdout), and a submission is bounded in time.

Everything a recipe puts into a batch script is checked first: a value with a control character (a newline)
would end its `#SBATCH` line and start a shell line of the script, and the paths and venv written into the
script's shell lines must be words the shell reads as themselves (no `$`, `;`, quotes or spaces). The recipe
schema refuses such values at `pretrain validate` (`sbatch_value_problem`, `shell_word_problem`); the paths
(output_dir) are checked again when the script is made.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import PretrainError

SUBMITTED = "submitted.json"
SBATCH_TIMEOUT_S = 120  # one sbatch call; a controller that does not answer in this time fails the submission
SBATCH_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # `#SBATCH --<option>=...`
SHELL_WORD = re.compile(r"^[A-Za-z0-9_./~+@%:,=-]+$")  # what a shell line of the script can hold unquoted


def sbatch_value_problem(value: object) -> str | None:
    """Why `value` cannot be an `#SBATCH` value (None when it can): a control character would end the line."""
    text = str(value)
    bad = sorted({c for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"holds a control character ({shown}): in the batch script it would end the #SBATCH line and start a "
            "shell command; remove it"
        )
    return None


def shell_word_problem(value: str) -> str | None:
    """Why `value` cannot stand unquoted in a shell line of the batch script (None when it can)."""
    if SHELL_WORD.match(value):
        return None
    odd = sorted({c for c in value if not SHELL_WORD.match(c)})
    return (
        f"holds {', '.join(repr(c) for c in odd)}, which the batch script's shell would interpret (it is written "
        "unquoted); use a path of letters, digits and _ . / ~ + @ % : , = -"
    )


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
    job per step, not two), submitted by `sbatch` (stderr kept, time bounded). Built on first use, so that
    datatrove is imported when something is submitted, not by every command; dill pickles the class with the
    executor for the nodes."""
    from datatrove.executor import SlurmPipelineExecutor

    class StepExecutor(SlurmPipelineExecutor):
        def launch_merge_stats(self) -> None:
            return None

        def launch_job(self) -> None:
            with _submitting_with(sbatch):
                super().launch_job()

    return StepExecutor


@contextlib.contextmanager
def _submitting_with(submit: Callable[..., str]):
    """datatrove's `launch_job` calls its module's `launch_slurm_job`; ours stands in while it runs."""
    import datatrove.executor.slurm as datatrove_slurm

    original = datatrove_slurm.launch_slurm_job
    datatrove_slurm.launch_slurm_job = submit
    try:
        yield
    finally:
        datatrove_slurm.launch_slurm_job = original


def sbatch(script: str, job_id_retriever: Callable[[str], str], *args: str) -> str:
    """Submit `script` with `sbatch ARGS FILE`; the job id. datatrove's own ran `check_output`, which drops
    stderr (where sbatch says why it refused) and waits for ever; a refusal here carries sbatch's stderr, and
    an sbatch that does not answer in `SBATCH_TIMEOUT_S` is a `SlurmError`."""
    with tempfile.NamedTemporaryFile("w", suffix=".slurm") as fh:
        fh.write(script)
        fh.flush()
        command = ["sbatch", *args, fh.name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=SBATCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SlurmError(
                f"sbatch did not answer within {SBATCH_TIMEOUT_S} s (is the Slurm controller up? `sinfo`); nothing "
                "was recorded as submitted: check `squeue --me`, then run the command again"
            ) from None
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return job_id_retriever(done.stdout)


def _check_script_values(settings: SlurmSettings, job_prefix: str, logs: Path) -> None:
    """What goes into a batch script: `#SBATCH` values free of control characters, shell words shell-safe."""
    values = {"partition": settings.partition, "qos": settings.qos, "job name": job_prefix}
    values.update({f"sbatch_args.{k}": v for k, v in settings.sbatch_args.items()})
    problems = [
        f"slurm {key}: {problem}" for key, v in values.items() if (problem := sbatch_value_problem(v))
    ]
    problems += [
        f"slurm sbatch_args: {k!r} is not an sbatch option name"
        for k in settings.sbatch_args
        if not SBATCH_OPTION.match(str(k))
    ]
    words = {"venv_path": settings.venv_path, "output folder": str(logs.absolute())}
    problems += [
        f"slurm {key} {v!r}: {problem}"
        for key, v in words.items()
        if v and (problem := shell_word_problem(v))
    ]
    if problems:
        raise SlurmError(f"{problems[0]} — nothing was submitted")


def slurm_chain(settings: SlurmSettings, steps: list[SlurmStep], job_prefix: str, logs: Path) -> list:
    """One datatrove executor per step, each depending on the previous one (nothing submitted yet); each
    step's script, pickled executor and logs go under `logs/<step name>/`."""
    _check_script_values(settings, job_prefix, logs)
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
        said = exc.stderr or exc.output or ""
        detail = " ".join((said.decode(errors="replace") if isinstance(said, bytes) else said).split())
        raise SlurmError(f"sbatch failed: {detail or f'exit status {exc.returncode}'}") from None
    ids = [str(job.job_id) for job in jobs]
    guard.record(ids)
    return ids

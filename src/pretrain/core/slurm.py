"""Batch scripts we write ourselves and hand to `sbatch` (the ladder's rung array and fit job).

Curation's jobs are written by datatrove's SlurmPipelineExecutor (data/executor.py); both read the same
settings model (`config.data.SlurmConfig`: partition, time, CPUs, memory, qos, venv, extra #SBATCH options).
`sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`; a missing or failing `sbatch` is a one-line error.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from pretrain.config.data import SlurmConfig
from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import PretrainError


class SlurmError(PretrainError):
    """sbatch is missing or refused a job."""


def sbatch_script(
    settings: SlurmConfig,
    *,
    job_name: str,
    command: list[str],
    log: Path,
    workdir: Path,
    array: str | None = None,
    depends_on: str | None = None,
    gpus_per_task: int = 0,
    cpus_per_task: int | None = None,
) -> str:
    """A batch script: the settings as #SBATCH lines, then `command` run from `workdir` (shell-quoted,
    except `$SLURM_ARRAY_TASK_ID`, which the shell on the node expands)."""
    options: dict[str, str | int] = {
        "job-name": job_name,
        "partition": settings.partition,
        "time": settings.time,
        "qos": settings.qos,
        "nodes": 1,
        "ntasks": 1,
        "cpus-per-task": settings.cpus_per_task if cpus_per_task is None else cpus_per_task,
        "mem-per-cpu": f"{settings.mem_per_cpu_gb}G",
        "output": str(log),
    }
    if gpus_per_task:
        options["gpus-per-task"] = gpus_per_task
    if array is not None:
        options["array"] = array
    if depends_on is not None:
        options["dependency"] = f"afterok:{depends_on}"
    options.update(settings.sbatch_args)  # the user's options win over ours
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH --{key}={value}" for key, value in options.items()),
        "set -euo pipefail",
    ]
    if settings.venv_path:
        lines.append(f"source {shlex.quote(str(Path(settings.venv_path) / 'bin' / 'activate'))}")
    lines.append(f"cd {shlex.quote(str(workdir))}")
    quoted = [
        '"$SLURM_ARRAY_TASK_ID"' if part == "$SLURM_ARRAY_TASK_ID" else shlex.quote(part) for part in command
    ]
    lines.append(" ".join(quoted))
    return "\n".join(lines) + "\n"


def submit(script: str, path: Path) -> str:
    """Write `script` to `path` and submit it; returns the job id."""
    if shutil.which("sbatch") is None:
        raise SlurmError(
            f"sbatch is not on PATH; submit from a Slurm login node, or set the executor to local ({path})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, script)
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, check=False)
    job_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job_id.isdigit():
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise SlurmError(f"sbatch {path} failed: {detail}")
    return job_id

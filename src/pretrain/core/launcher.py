"""What the process learns from its launcher's environment: started by one, restarted by it, and how often.

`accelerate launch` and torchrun set these variables in every process they start; `commands/launch.py`
(which decides whether to relaunch a command) and the training loop (which logs restarts) read them here.
"""

from __future__ import annotations

import os

# set by accelerate launch / torchrun in every process they start
LAUNCHER_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU")
RESTART_COUNT = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun's elastic agent in every worker
SUPERVISOR_RESTARTS = "PRETRAIN_RESTARTS"  # set by core/supervisor.py in every process of an attempt
RELAUNCHED = "PRETRAIN_RELAUNCHED"  # our own mark, so a relaunched process never relaunches again
DATA_STAGES_DONE = "PRETRAIN_DATA_STAGES_DONE"  # `pretrain run` ran the data stages before relaunching


def under_launcher(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(RELAUNCHED) == "1" or any(v in env for v in LAUNCHER_VARIABLES)


def under_elastic_agent(environ: dict[str, str] | None = None) -> bool:
    """Started by torchrun's elastic agent (accelerate launch's multi-process path), which SIGKILLs its workers
    30 s after the SIGTERM that stops them."""
    env = os.environ if environ is None else environ
    return "TORCHELASTIC_RUN_ID" in env


def launcher_restarts(environ: dict[str, str] | None = None) -> int:
    """How many times this job was restarted after a crash: by the supervising `pretrain` process (relaunched
    runs, core/supervisor.py), or by torchrun's elastic agent (`accelerate launch --max_restarts` by hand)."""
    env = os.environ if environ is None else environ
    return max(int(env.get(RESTART_COUNT, "0") or 0), int(env.get(SUPERVISOR_RESTARTS, "0") or 0))

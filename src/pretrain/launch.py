"""Start `pretrain run|train` the way the recipe's launch config says.

    pretrain run recipes/smollm2-135m/config.yaml            # re-executes itself under accelerate launch
    pretrain run RECIPE --num-processes 4                    # ... with 4 processes instead of the config's
    pretrain run RECIPE --no-relaunch                        # run here, in this one process

Started outside a launcher, a command whose recipe names an accelerate config that asks for more than one
process or machine, or for a GPU, re-executes itself as
`accelerate launch --config_file <that config> -m pretrain <the same arguments>` and prints that command
first: a GPU user who forgets `accelerate launch` would otherwise train on one device for days. Under a
launcher (accelerate, torchrun, Slurm's srun with torchrun) the launcher is trusted and nothing happens.

The relaunch also passes `--max_restarts` (`train.max_restarts`): when a rank dies, torchrun's elastic
agent stops the others and starts the whole group again, and training resumes from the last complete
checkpoint (`--resume auto`) with exact data accounting.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass

from pretrain.config import Recipe
from pretrain.core.errors import RecipeError

# set by accelerate launch / torchrun in every process they start
LAUNCHER_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU")
RESTART_COUNT = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun's elastic agent in every worker
RELAUNCHED = "PRETRAIN_RELAUNCHED"  # our own mark, so a relaunched process never relaunches again


@dataclass(frozen=True)
class Launch:
    """What to execute instead of this process (`argv`), and the command as the user would type it."""

    argv: list[str]
    shown: str


def under_launcher(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(RELAUNCHED) == "1" or any(v in env for v in LAUNCHER_VARIABLES)


def wants_launcher(settings: dict) -> bool:
    """More than one process or machine, or a GPU (`use_cpu: false`), asks for `accelerate launch`."""
    processes = settings.get("num_processes") or 1
    machines = settings.get("num_machines") or 1
    return processes > 1 or machines > 1 or settings.get("use_cpu") is False


def plan_launch(
    recipe: Recipe, argv: list[str], num_processes: int | None = None, environ: dict[str, str] | None = None
) -> Launch | None:
    """The accelerate command that runs `argv` (the `pretrain` arguments) as the recipe's config says,
    or None when this process should run it itself."""
    if under_launcher(environ) or not recipe.accelerate_config:
        return None
    config = recipe.resolve_path(recipe.accelerate_config)
    settings = recipe.accelerate_settings()
    if settings is None:
        raise RecipeError(
            [f"{recipe.source_label}: accelerate_config: {config} is missing or not a YAML mapping"]
        )
    if num_processes is None and not wants_launcher(settings):
        return None
    launcher = ["accelerate", "launch", "--config_file", str(config)]
    if num_processes is not None:
        launcher += ["--num_processes", str(num_processes)]
    if recipe.train.max_restarts:  # a dead rank restarts the job, which resumes from its last checkpoint
        launcher += ["--max_restarts", str(recipe.train.max_restarts)]
    command = [*launcher, "-m", "pretrain", *argv]
    return Launch(
        argv=[sys.executable, "-m", "accelerate.commands.launch", *command[2:]], shown=shlex.join(command)
    )


def under_elastic_agent(environ: dict[str, str] | None = None) -> bool:
    """Started by torchrun's elastic agent (accelerate launch's multi-process path), which SIGKILLs its workers
    30 s after the SIGTERM that stops them."""
    env = os.environ if environ is None else environ
    return "TORCHELASTIC_RUN_ID" in env


def launcher_restarts(environ: dict[str, str] | None = None) -> int:
    """How many times the launcher (torchrun elastic, under accelerate launch) has restarted this job."""
    env = os.environ if environ is None else environ
    return int(env.get(RESTART_COUNT, "0") or 0)


def relaunch(launch: Launch) -> None:
    """Replace this process with the launcher (signals from a scheduler then reach it directly)."""
    print(f"relaunching under the recipe's launch config:\n  {launch.shown}", flush=True)
    sys.stderr.flush()
    os.execve(launch.argv[0], launch.argv, {**os.environ, RELAUNCHED: "1"})


def strip_launch_flags(argv: list[str]) -> list[str]:
    """`argv` without our own launch flags (the relaunched process must not see them again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not (arg.startswith("--num-processes=") or arg == "--no-relaunch"):
            out.append(arg)
    return out

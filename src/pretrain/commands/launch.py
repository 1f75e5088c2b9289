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
from pretrain.core.launcher import RELAUNCHED, under_launcher
from pretrain.core.lifetime import PARENT_PID


@dataclass(frozen=True)
class Launch:
    """What to execute instead of this process (`argv`), and the command as the user would type it."""

    argv: list[str]
    shown: str


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


def relaunch(launch: Launch) -> None:
    """Replace this process with the launcher (signals from a scheduler then reach it directly). The ranks it
    starts are its children: they end when it does (`PARENT_PID`: this pid, which the launcher keeps)."""
    print(f"relaunching under the recipe's launch config:\n  {launch.shown}", flush=True)
    sys.stderr.flush()
    os.execve(launch.argv[0], launch.argv, {**os.environ, RELAUNCHED: "1", PARENT_PID: str(os.getpid())})


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


@dataclass(frozen=True)
class LaunchRequest:
    """How a command that trains was started: its `pretrain` arguments (to run again under the launcher) and
    `--num-processes`. A command started with `--no-relaunch` gets none and runs in its own process."""

    argv: list[str]
    num_processes: int | None = None


def relaunch_if_asked(recipe: Recipe, request: LaunchRequest | None) -> None:
    """Re-execute this command under `accelerate launch` when the recipe's launch config (or `--num-processes`)
    asks for it: then this does not return. Under a launcher, or without a request, it returns at once."""
    if request is None:
        return
    launch = plan_launch(recipe, strip_launch_flags(request.argv), request.num_processes)
    if launch is not None:
        relaunch(launch)

"""Start `pretrain run|train` the way the recipe's launch config says.

    pretrain run recipes/smollm2-135m/config.yaml            # re-executes itself under accelerate launch
    pretrain run RECIPE --num-processes 4                    # ... with 4 processes instead of the config's
    pretrain run RECIPE --no-relaunch                        # run here, in this one process

Started outside a launcher, a command whose recipe names an accelerate config that asks for more than one
process or machine, or for a GPU, re-executes itself as
`accelerate launch --config_file <that config> -m pretrain <the same arguments>` and prints that command
first: a GPU user who forgets `accelerate launch` would otherwise train on one device for days. Under a
launcher (accelerate, torchrun, Slurm's srun with torchrun) the launcher is trusted and nothing happens.

This process stays as the job's supervisor (core/supervisor.py): when a rank dies, the whole launch is
started again, at most `train.max_restarts` times, and training resumes from the last complete checkpoint
(`--resume auto`) with exact data accounting — but an error of the input (a `PretrainError` in any rank) is
never retried, and a job stopped by a signal exits 128 + that signal (130 after Ctrl-C) once its stop checkpoint
is written.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.errors import RecipeError
from pretrain.core.launcher import RELAUNCHED, under_launcher
from pretrain.core.recipe_files import shipped_root
from pretrain.core.supervisor import supervise
from pretrain.core.verdict import Verdict


@dataclass(frozen=True)
class Launch:
    """What to execute instead of this process (`argv`), and the command as the user would type it."""

    argv: list[str]
    shown: str
    max_restarts: int = 0
    """Restarts after a crash (`train.max_restarts`), by this process (core/supervisor.py)."""


def wants_launcher(settings: dict) -> bool:
    """More than one process or machine, or a GPU (`use_cpu: false`), asks for `accelerate launch`."""
    processes = settings.get("num_processes") or 1
    machines = settings.get("num_machines") or 1
    return processes > 1 or machines > 1 or settings.get("use_cpu") is False


def wants_gpu(settings: dict) -> bool:
    """The launch config is meant for GPUs: not `use_cpu`, and GPU mixed precision (bf16 / fp16 / fp8).

    accelerate's MULTI_GPU type alone says only "start N processes": on a machine without CUDA they train on
    the CPU over gloo, which is what `cpu_ddp.yaml` (fp32) is for; the GPU configs ask for mixed precision."""
    precision = str(settings.get("mixed_precision") or "no").lower()
    return settings.get("use_cpu") is not True and precision in ("bf16", "fp16", "fp8")


def cpu_config_hint() -> str:
    """How to run a recipe on this machine's CPU instead: the shipped one-process config."""
    root = shipped_root()
    config = root / "accelerate_configs" / "cpu.yaml" if root else "accelerate_configs/cpu.yaml"
    return f"--set accelerate_config={config}"


def launch_verdict(recipe: Recipe, num_processes: int | None = None, gpus: int | None = None) -> Verdict:
    """The launch config against this machine: GPU processes need as many GPUs here (per machine).

    `gpus`: the GPUs visible here (default: torch's count)."""
    settings = recipe.accelerate_settings() or {}
    processes = num_processes or settings.get("num_processes") or 1
    machines = settings.get("num_machines") or 1
    per_machine = max(1, processes // machines)
    name = Path(recipe.accelerate_config).name if recipe.accelerate_config else "no accelerate_config"
    if not wants_gpu(settings):
        return Verdict.passed("launch", f"{name}: {processes} CPU process(es)")
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    if gpus >= per_machine:
        return Verdict.passed("launch", f"{name}: {processes} GPU process(es), {gpus} GPU(s) on this machine")
    here = "no GPU" if gpus == 0 else f"{gpus} GPU(s)"
    fix = (
        f"run it on a machine with {per_machine} GPUs, or here on the CPU with {cpu_config_hint()}"
        if gpus == 0
        else f"pass --num-processes {gpus} (the global batch stays the same), or run it where {per_machine} GPUs are"
    )
    return Verdict.failed(
        "launch",
        f"accelerate_config {name} asks for {per_machine} GPU process(es) per machine, and this machine has "
        f"{here}: {fix}",
    )


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
    command = [*launcher, "-m", "pretrain", *argv]
    return Launch(
        argv=[sys.executable, "-m", "accelerate.commands.launch", *command[2:]],
        shown=shlex.join(command),
        max_restarts=recipe.train.max_restarts,
    )


def relaunch(launch: Launch) -> None:
    """Run the launcher under this process's supervision (restarts after a crash), then exit with its code.
    The launcher is this process's child and its ranks are the launcher's: each ends when its parent does
    (core/lifetime.py)."""
    print(f"relaunching under the recipe's launch config:\n  {launch.shown}", flush=True)
    sys.stderr.flush()
    sys.exit(supervise(launch.argv, {RELAUNCHED: "1"}, launch.max_restarts))


def strip_launch_flags(argv: list[str]) -> list[str]:
    """`argv` without our own launch flags (the relaunched process must not see them again), nor
    `--no-preflight` (a launched rank does not run the checks anyway)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not (arg.startswith("--num-processes=") or arg in ("--no-relaunch", "--no-preflight")):
            out.append(arg)
    return out


@dataclass(frozen=True)
class LaunchRequest:
    """How a command that trains was started: its `pretrain` arguments (to run again under the launcher) and
    `--num-processes`. A command started with `--no-relaunch` gets none and runs in its own process."""

    argv: list[str]
    num_processes: int | None = None


def will_relaunch(recipe: Recipe, request: LaunchRequest | None) -> bool:
    """`relaunch_if_asked` would re-execute this command under `accelerate launch`."""
    if request is None:
        return False
    return plan_launch(recipe, strip_launch_flags(request.argv), request.num_processes) is not None


def relaunch_if_asked(recipe: Recipe, request: LaunchRequest | None) -> None:
    """Re-execute this command under `accelerate launch` when the recipe's launch config (or `--num-processes`)
    asks for it: then this does not return. Under a launcher, or without a request, it returns at once."""
    if request is None:
        return
    launch = plan_launch(recipe, strip_launch_flags(request.argv), request.num_processes)
    if launch is not None:
        relaunch(launch)

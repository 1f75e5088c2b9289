"""`pretrain ladder RECIPE`: train the ladder's rungs as ordinary runs, fit the recipe's law, report it.

    pretrain ladder recipes/tiny/config.yaml                       # forecast the recipe's own run
    pretrain ladder RECIPE --budget-flops 1e21                     # ... or the Chinchilla optimum of a budget
    pretrain ladder RECIPE --budget-gpu-hours 5000 --gpu h100

The rungs are derived runs of the recipe (commands/ladder_rungs.py); the fit and its reports are
scaling/ladder_fit.py's. `ladder.executor: local` trains the rungs one after another, then fits.
`ladder.executor: slurm` runs the recipe's data stages here (as `pretrain run` does, on the data executor: the
rungs link their outputs, and the design reads the trained tokenizer's vocabulary, so they must be done before
any rung starts), then submits one job array with a task per size and a fit job after it (core/slurm.py, the
project's one submitter), and exits:

    task k:   pretrain ladder RECIPE --size-index k   # size k's long run, then its branches (relaunched under
                                                      # accelerate as the recipe's training is)
    fit job:  pretrain ladder RECIPE --fit-only       # fit.json, report, plot from the rungs' own folders

Scripts, logs and the submitted job ids are in `ladder/slurm/`; a second `pretrain ladder` while the jobs
are pending is refused with their ids. Once the rungs are current, `pretrain ladder` fits here and submits
nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.commands.ladder_rungs import rung_recipe, rung_results, train_runs
from pretrain.commands.launch import LaunchRequest, relaunch_if_asked
from pretrain.commands.run import run_stage
from pretrain.commands.stages import data_stage_names, is_current
from pretrain.config import Recipe, load_recipe
from pretrain.core.dist import is_main_process, wait_for_all_ranks
from pretrain.core.errors import PretrainError, StageError
from pretrain.core.lifetime import die_with_parent
from pretrain.core.progress import get_logger, human
from pretrain.core.slurm import SUBMITTED, SlurmStep, SubmittedJobs, slurm_chain, submit_chain
from pretrain.scaling.flops import budget_flops
from pretrain.scaling.ladder import LadderDesign, LadderError, Run, design_ladder
from pretrain.scaling.ladder_fit import SLURM_LAUNCHER, fit_and_report

log = get_logger("pretrain.ladder")

SLURM_DIR = "slurm"  # under ladder/: the jobs' scripts, pickled executors, logs and SUBMITTED


@dataclass(frozen=True)
class LadderRequest:
    """`pretrain ladder` as the user gave it: what a Slurm task needs to run its part of the same ladder."""

    recipe_file: Path
    """A recipe path, or a shipped recipe's name."""
    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    budget_flops: float | None = None
    budget_gpu_hours: float | None = None
    gpu: str | None = None
    size_index: int | None = None
    """An array task's size (`--size-index`, set by the submitted jobs)."""
    fit_only: bool = False
    """The fit job (`--fit-only`, set by the submitted jobs)."""
    num_processes: int | None = None
    relaunch: bool = True
    """False: `--no-relaunch`, train in this process whatever the recipe's launch config says."""

    def recipe(self) -> Recipe:
        return load_recipe(self.recipe_file, overrides=self.overrides, output_dir=self.output_dir)

    @property
    def budget(self) -> tuple[float | None, float | None, str | None]:
        return self.budget_flops, self.budget_gpu_hours, self.gpu

    def task_argv(self, recipe: Recipe, flags: list[str]) -> list[str]:
        """`pretrain ladder` as the user ran it (absolute paths, same overrides and budget), plus `flags`."""
        source = recipe.path.resolve() if recipe.path else Path(self.recipe_file).resolve()
        argv = ["python", "-m", "pretrain", "ladder", str(source)]
        argv += ["--output-dir", str(recipe.layout.root.resolve())]
        for override in self.overrides:
            argv += ["--set", override]
        for flag, value in (
            ("--budget-flops", self.budget_flops),
            ("--budget-gpu-hours", self.budget_gpu_hours),
            ("--gpu", self.gpu),
            ("--num-processes", self.num_processes),
        ):
            if value is not None:
                argv += [flag, str(value)]
        if not self.relaunch:
            argv.append("--no-relaunch")
        return [*argv, *flags]


@dataclass
class LadderTask:
    """A Slurm task of the ladder: `argv` in a fresh process, `{rank}` replaced by the task's rank (the size),
    so that the task relaunches itself under accelerate as the recipe's training is."""

    argv: list[str]

    def __call__(self, data=None, rank: int = 0, world_size: int = 1):
        argv = [a.replace("{rank}", str(rank)) for a in self.argv]
        subprocess.run(argv, check=True, preexec_fn=die_with_parent)  # noqa: PLW1509 - only a prctl; ends with us
        return data


def run_data_stages(recipe: Recipe) -> None:
    """The recipe's data stages, once for all rungs (skipped when current)."""
    for name in data_stage_names():
        run_stage(recipe, name)


def require_data_stages(recipe: Recipe, step: str) -> None:
    """An array task or the fit job finds the data stages done (the submitting `pretrain ladder` ran them)."""
    for name in data_stage_names():
        if not is_current(recipe, name):
            raise StageError(
                f"ladder {step}: the recipe's {name} stage is not current in {recipe.layout.root}; run "
                f"`pretrain ladder {recipe.source_label}` (it runs the data stages before submitting the rungs)"
            )


def design_of(recipe: Recipe, budget: float | None, gpu_hours: float | None, gpu: str | None) -> LadderDesign:
    flops = budget_flops(budget, gpu_hours, gpu, recipe.plan.mfu) if budget or gpu_hours else None
    return design_ladder(recipe, flops)


def log_design(design: LadderDesign) -> None:
    log.info(
        "ladder: %d runs (%d sizes, %s to %s non-embedding params) forecasting %s (%s params, %s tokens); "
        "%.3g FLOPs in all",
        len(design.runs),
        len(design.long_runs()),
        human(design.sizes()[0]),
        human(design.sizes()[-1]),
        design.target_source,
        human(design.target_non_embedding_params),
        human(design.target_tokens),
        design.flops,
    )


def run_ladder(
    recipe: Recipe,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
) -> Path | None:
    """Design, train and fit the ladder; returns `ladder/fit.json` (None on non-main ranks)."""
    run_data_stages(recipe)
    design = design_of(recipe, budget, gpu_hours, gpu)
    log_design(design)
    start = time.monotonic()
    train_runs(recipe, design, design.runs)
    wait_for_all_ranks()  # every rank's rungs are done; the main process fits, the others are finished
    if not is_main_process():
        return None
    results, stable = rung_results(recipe, design)
    return fit_and_report(recipe, design, results, stable, time.monotonic() - start)


def train_size(
    recipe: Recipe,
    size_index: int,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
) -> list[Run]:
    """One array task: size `size_index`'s long run, then its branches (each cached and resumable)."""
    require_data_stages(recipe, f"--size-index {size_index}")
    design = design_of(recipe, budget, gpu_hours, gpu)
    sizes = len(design.long_runs())
    if not 0 <= size_index < sizes:
        raise LadderError(
            f"ladder --size-index {size_index}: the ladder of {recipe.source_label} has {sizes} sizes "
            f"(0-{sizes - 1}); the job array must be --array=0-{sizes - 1} (re-run `pretrain ladder` to resubmit)"
        )
    runs = [r for r in design.runs if r.size == size_index]  # design order: the long run first
    train_runs(recipe, design, runs)
    return runs


def fit_ladder(
    recipe: Recipe,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
    launcher: str = SLURM_LAUNCHER,
) -> Path:
    """The fit job: fit.json, report and plot from the rungs' folders; clears the submission record."""
    require_data_stages(recipe, "--fit-only")
    design = design_of(recipe, budget, gpu_hours, gpu)
    results, stable = rung_results(recipe, design)
    path = fit_and_report(recipe, design, results, stable, sum(r.seconds or 0.0 for r in results), launcher)
    submitted_jobs(recipe).clear()  # the submission is done: a re-run may submit again
    return path


def submitted_jobs(recipe: Recipe) -> SubmittedJobs:
    return SubmittedJobs(recipe.layout.ladder / SLURM_DIR / SUBMITTED)


def submit_ladder(recipe: Recipe, request: LadderRequest) -> list[str] | None:
    """Submit the rungs' job array and the fit job after it; returns their ids, or None when every rung is
    current already (then the fit is written here)."""
    jobs = submitted_jobs(recipe)
    jobs.refuse_if_pending(
        "ladder",
        f"If a task failed (the fit job then stays pending: DependencyNeverSatisfied) or they were cancelled: "
        f"scancel them, delete {jobs.path} and run `pretrain ladder` again (finished rungs are kept, interrupted "
        "ones resume)",
    )
    machines = (recipe.accelerate_settings() or {}).get("num_machines") or 1
    if machines > 1:  # each array task is one node: a multi-node launch would wait for peers forever
        raise LadderError(
            f"ladder.executor slurm: {recipe.accelerate_config} asks for {machines} machines, but each array "
            "task (one size) runs on one node; rungs are small: use a one-node accelerate config for the ladder "
            "(--set accelerate_config=...)"
        )
    run_data_stages(recipe)
    design = design_of(recipe, *request.budget)
    log_design(design)
    if all(is_current(rung_recipe(recipe, design, run), "train") for run in design.runs):
        log.info("ladder: every rung is up to date — fitting here, nothing to submit")
        fit_ladder(recipe, *request.budget)
        return None
    settings = recipe.ladder.slurm
    steps = [
        SlurmStep(
            "rungs",
            len(design.long_runs()),
            [LadderTask(request.task_argv(recipe, ["--size-index", "{rank}"]))],
            cpus_per_task=settings.cpus_per_task,
            gpus_per_task=settings.gpus_per_task,
        ),
        SlurmStep("fit", 1, [LadderTask(request.task_argv(recipe, ["--fit-only"]))], cpus_per_task=1),
    ]
    # the nodes' jobs may start elsewhere: every path they read is absolute
    logs = (recipe.layout.ladder / SLURM_DIR).resolve()
    return submit_chain(slurm_chain(settings, steps, f"{recipe.name}-ladder", logs), jobs)


def _check_budget(request: LadderRequest) -> None:
    for flag, value in (
        ("--budget-flops", request.budget_flops),
        ("--budget-gpu-hours", request.budget_gpu_hours),
    ):
        if value is not None and value <= 0:
            raise PretrainError(f"ladder: {flag} must be positive, got {value}")
    if request.budget_flops is not None and request.budget_gpu_hours is not None:
        raise PretrainError("ladder: give --budget-flops or --budget-gpu-hours, not both")
    if request.budget_gpu_hours is not None and not request.gpu:
        raise PretrainError("ladder: --budget-gpu-hours needs --gpu (e.g. --gpu h100)")
    if request.size_index is not None and request.fit_only:
        raise PretrainError("ladder: give --size-index or --fit-only, not both")


def ladder(request: LadderRequest, launch: LaunchRequest | None) -> int:
    """`pretrain ladder`: train and fit here, submit to Slurm, or run one submitted task; returns the exit code.

    Training runs under the recipe's launch config (`launch`, relaunching this command); submitting and
    fitting run in this one process."""
    _check_budget(request)
    recipe = request.recipe()
    submits = request.size_index is None and (request.fit_only or recipe.ladder.executor == "slurm")
    if not submits:
        relaunch_if_asked(recipe, launch)
    if request.size_index is not None:
        runs = train_size(recipe, request.size_index, *request.budget)
        if is_main_process():
            print(f"ladder: size {request.size_index} trained ({', '.join(r.name for r in runs)})")
        return 0
    if request.fit_only:
        path = fit_ladder(recipe, *request.budget)
    elif recipe.ladder.executor == "slurm":
        ids = submit_ladder(recipe, request)
        if ids is not None:
            rungs_id, fit_id = ids
            sizes = len(design_of(recipe, *request.budget).long_runs())
            print(
                f"ladder: submitted to Slurm: rungs job array {rungs_id} ({sizes} tasks, one per size), fit job "
                f"{fit_id} after it; scripts and logs under {recipe.layout.ladder / SLURM_DIR}. When they "
                f"finish, {recipe.layout.ladder_fit} is written and `pretrain plan` uses it"
            )
            sys.stdout.flush()
            return 0
        path = recipe.layout.ladder_fit
    else:
        path = run_ladder(recipe, *request.budget)
    if path is not None:
        print(f"ladder: fit {path}, report {recipe.layout.ladder_report}")
    return 0

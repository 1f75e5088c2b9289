"""`pretrain preflight RECIPE`: go or no-go in a minute, before a GPU-hour is spent.

    pretrain preflight recipes/smollm2-135m/config.yaml [--output-dir D] [--num-processes N]

Every check that can fail later, without training: the recipe; which stages will (re-)run and why; the launch
config against this machine's GPUs; the sources (a Hub dataset's files listed) when curation will run; the
trackers' packages and the eval tasks when training will run; the Hub token and repo when checkpoints are
pushed; disk for what the stages still write; memory per device from the plan; and whether the run folder's
checkpoints can be continued by this recipe (model shape, tokenizer, a schedule whose decay has begun).
One line per check, ✓ or ✗ with the fix; exit 1 on any ✗.

`pretrain run` and `pretrain train` run the same checks before they start (`--no-preflight` skips them) and
print one line when everything passes. A process started by a launcher does not: its parent checked before
relaunching, and the ranks of a job launched by hand cannot stop together on a failed check
(run `pretrain preflight` on the login node first).
"""

from __future__ import annotations

import time
from pathlib import Path

from pretrain.commands.launch import launch_verdict, wants_gpu
from pretrain.commands.stages import StagePlan, stage_plans
from pretrain.config import Recipe, load_recipe
from pretrain.core.errors import PretrainError, RecipeError
from pretrain.core.progress import get_logger
from pretrain.core.verdict import Verdict
from pretrain.data.source_checks import sources_verdict
from pretrain.evaluation.task_names import eval_tasks_verdict
from pretrain.hub.access import push_access_verdict
from pretrain.scaling.plan import plan_recipe
from pretrain.scaling.resources import disk_verdict, memory_verdict, ram_bytes
from pretrain.tokens.tokenizer import reads_no_mix
from pretrain.train.compat import run_folder_verdict
from pretrain.train.trackers import trackers_verdict

log = get_logger("pretrain.preflight")


class PreflightFailed(PretrainError):
    """A check failed before the run started; its ✗ lines were printed."""


def stages_verdict(plans: list[StagePlan], force: bool) -> Verdict:
    if force:
        return Verdict.passed("stages", "every stage re-runs (--force)")
    parts = [p.name + (" current" if not p.runs else f" runs ({p.why})") for p in plans]
    return Verdict.passed("stages", "; ".join(parts))


def tokenizer_change(recipe: Recipe, plans: dict[str, StagePlan]) -> str | None:
    """Why the tokenizer stage would build a new vocabulary (None when it is current or copies a reused one)."""
    plan = plans["tokenizer"]
    if not plan.runs or (reads_no_mix(recipe) and not recipe.tokenizer.extend):
        return None
    return plan.why if plan.status == "stale" else "tokenizer/ is missing"


def device_memory(recipe: Recipe) -> tuple[str, float | None]:
    """The device one process trains on, and its memory in GiB."""
    import torch

    settings = recipe.accelerate_settings() or {}
    if wants_gpu(settings) and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.name, props.total_memory / 2**30
    if wants_gpu(settings):
        return f"{recipe.plan.gpu} (plan.gpu, no GPU here)", None
    processes = settings.get("num_processes") or 1
    ram = ram_bytes()
    return f"this machine's RAM / {processes} process(es)", ram / processes / 2**30 if ram else None


def preflight_verdicts(
    recipe: Recipe, num_processes: int | None = None, force: bool = False
) -> list[Verdict]:
    """Every check for `recipe` (already loaded and valid), in the order they are printed."""
    plans = {p.name: p for p in stage_plans(recipe)}
    runs = set(plans) if force else {name for name, p in plans.items() if p.runs}
    verdicts = [
        Verdict.passed(
            "recipe", f"{recipe.source_label}: valid ({recipe.model.model_type}, -> {recipe.out})"
        ),
        stages_verdict(list(plans.values()), force),
        launch_verdict(recipe, num_processes),
    ]
    if "curate" in runs:
        verdicts.append(sources_verdict(recipe))
    if "train" in runs:
        verdicts += [trackers_verdict(recipe.train.trackers), eval_tasks_verdict(recipe)]
    if recipe.hub.push_checkpoints and recipe.hub.repo_id:
        verdicts.append(push_access_verdict(recipe.hub.repo_id))
    plan = plan_recipe(recipe)
    verdicts.append(disk_verdict(recipe, plan["params"], plan["vocab_size"], runs))
    if "train" in runs:
        device, available = device_memory(recipe)
        if available is None and "plan.gpu" in device:
            available = plan["hardware"]["gpu_memory_gb"]
        verdicts.append(memory_verdict(plan["memory_per_device"]["total_gb"], device, available))
        if not force:
            change = tokenizer_change(recipe, plans)
            verdicts.append(run_folder_verdict(recipe, plan["steps"], change))
    return verdicts


def print_verdicts(verdicts: list[Verdict], seconds: float) -> int:
    """One line per verdict, then the tally; returns how many failed."""
    for verdict in verdicts:
        print(verdict.line(), flush=True)
    failed = sum(not v.ok for v in verdicts)
    tally = f"{failed} of {len(verdicts)} checks failed" if failed else f"all {len(verdicts)} checks passed"
    print(f"preflight: {tally} in {seconds:.1f} s", flush=True)
    return failed


def preflight(
    path: Path,
    overrides: list[str] | None = None,
    output_dir: str | None = None,
    num_processes: int | None = None,
) -> int:
    """`pretrain preflight`: print every check's line; returns 1 when any failed."""
    start = time.monotonic()
    try:
        recipe = load_recipe(path, overrides=overrides, output_dir=output_dir)
    except RecipeError as exc:
        verdicts = [Verdict.failed("recipe", problem) for problem in exc.problems]
        return 1 if print_verdicts(verdicts, time.monotonic() - start) else 0
    failed = print_verdicts(preflight_verdicts(recipe, num_processes), time.monotonic() - start)
    return 1 if failed else 0


def require_preflight(recipe: Recipe, num_processes: int | None = None, force: bool = False) -> None:
    """Before `run` / `train` start work: the checks, one line when all pass, else the ✗ lines and a
    `PreflightFailed`."""
    start = time.monotonic()
    verdicts = preflight_verdicts(recipe, num_processes, force)
    failed = [v for v in verdicts if not v.ok]
    seconds = time.monotonic() - start
    if not failed:
        log.info(
            "preflight: all %d checks passed in %.1f s (`pretrain preflight` lists them)",
            len(verdicts),
            seconds,
        )
        return
    raise PreflightFailed(
        "\n".join(v.line() for v in failed)
        + f"\npreflight: {len(failed)} of {len(verdicts)} checks failed in {seconds:.1f} s; fix them, or pass "
        "--no-preflight to start anyway"
    )

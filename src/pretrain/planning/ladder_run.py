"""`pretrain ladder RECIPE`: train the ladder's rungs as ordinary runs, fit the recipe's law, report it.

    pretrain ladder recipes/tiny/config.yaml                       # forecast the recipe's own run
    pretrain ladder RECIPE --budget-flops 1e21                     # ... or the Chinchilla optimum of a budget
    pretrain ladder RECIPE --budget-gpu-hours 5000 --gpu h100

Each rung is the recipe with its model rescaled and its length, batch and schedule set by the design
(planning/ladder.py), in its own run folder `ladder/rungs/<name>/` whose data stages are links to the
recipe's `mix/`, `tokenizer/` and `tokens/`: same documents, tokenizer and packed tokens, curated once.
Rungs go through the train stage (`pipeline.run_stage`), so they are cached and resumable like any
run: a finished rung (current `final/STAGE.json`) is skipped, an interrupted one resumes from its
newest checkpoint. A branch resumes from its long run's checkpoint at its decay start. Under
`accelerate launch` every rank runs the rungs together (as `pretrain run` does).

`ladder.executor: local` trains the rungs one after another, then fits. `ladder.executor: slurm` runs the
recipe's data stages here (as `pretrain run` does, on the data executor: the rungs link their outputs, and
the design reads the trained tokenizer's vocabulary, so they must be done before any rung starts), then
submits one job array with a task per size and a fit job after it (`--dependency=afterok`), and exits:

    task k:   pretrain ladder RECIPE --size-index k   # size k's long run, then its branches (relaunched under
                                                      # accelerate as the recipe's training is)
    fit job:  pretrain ladder RECIPE --fit-only       # fit.json, report, plot from the rungs' own folders

Scripts, logs and the submitted job ids are in `ladder/slurm/`; a second `pretrain ladder` while the jobs
are pending is refused with their ids. Once the rungs are current, `pretrain ladder` fits here and submits
nothing.

Outputs (core/layout.py): `ladder/fit.json` (final losses), `ladder/fit_stable.json` (peak-lr losses of
the long runs, for mid-run checks), `ladder/ladder.json`, `ladder/report.md`, `ladder/loss_vs_compute.png`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pretrain.config import Recipe, validate_recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.dist import partial_state, world_size
from pretrain.core.errors import DataError, PretrainError, StageError
from pretrain.core.markers import read_marker
from pretrain.core.progress import format_seconds, get_logger, human
from pretrain.core.slurm import sbatch_script, submit
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.pipeline import run_stage
from pretrain.planning.fit import backtest_largest_size, compute_optimal, fit_scaling_law, predict
from pretrain.planning.fit_law import ScalingFit
from pretrain.planning.flops import budget_flops
from pretrain.planning.ladder import LadderDesign, LadderError, Run, design_ladder, recipe_vocab
from pretrain.planning.ladder_record import LadderRecord, RungResult, write_record
from pretrain.planning.ladder_report import write_plot, write_report
from pretrain.stages import STAGES, fingerprint, is_current, link_data_stages
from pretrain.tokens.manifest import TokenManifest
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import read_records, validation_records

log = get_logger("pretrain.ladder")

RUNG_RECORD = "RUNG.json"  # in a rung's folder: its train fingerprint (and a branch's long run's)
BOOTSTRAP = 200
SLURM_DIR = "slurm"  # under ladder/: the batch scripts, their logs and SUBMITTED
SUBMITTED = "submitted.json"  # the job ids of a submission whose fit has not been written yet
LOCAL_LAUNCHER = "local, sequential"
SLURM_LAUNCHER = "Slurm job array, a task per size"


def rung_recipe(recipe: Recipe, design: LadderDesign, run: Run) -> Recipe:
    """The recipe of one rung: same data, tokenizer and family; the design's shape, length and schedule."""
    raw = recipe.model_dump(mode="json")
    raw["output_dir"] = str(recipe.layout.ladder_rung(run.name))
    raw["model"].update(run.shape.model_fields())
    train = raw["train"]
    train.update(
        steps=run.steps,
        tokens=None,
        tokens_per_param=None,
        global_batch_tokens=design.global_batch_tokens,
        micro_batch_size=design.micro_batch_size,
    )
    # a staged mix keeps its proportions at the rung's length: token counts (the target's) become shares
    for stage, share in zip(train["data_stages"], recipe.train.stage_shares()):
        stage.update(share=share, tokens=None)
    # every run of a size shares its warmup, so a branch's lr equals its long run's up to the branch point
    train["schedule"].update(name="wsd", warmup_steps=run.warmup_steps, decay_fraction=design.decay_fraction)
    if run.branch_of is None:  # keep every branch point: checkpoints every quantum steps, none pruned
        train["checkpoint"].update(
            every_steps=run.checkpoint_every,
            every_fraction=None,
            keep_last=run.steps // run.checkpoint_every + 1,
            save_optimizer=True,
        )
    raw["eval"]["enabled"] = False  # the fit needs the val loss; benchmarks would only cost time
    raw["hub"]["push_checkpoints"] = False
    return validate_recipe(raw, source=recipe.path or "<recipe>", check_files=False)


def _rung_resume(recipe: Recipe, design: LadderDesign, run: Run, rung: Recipe) -> str:
    """`--resume` for a rung: its own newest checkpoint, or for a new branch its long run's at the decay start.

    A rung folder records what it is being trained as (its train fingerprint, and a branch its long
    run's): when that changed, the folder's checkpoints and results belong to another run and go.
    """
    long_recipe = None
    identity: dict = {"fingerprint": fingerprint(rung, "train")}
    if run.branch_of:
        long_run = next(r for r in design.runs if r.name == run.branch_of)
        long_recipe = rung_recipe(recipe, design, long_run)
        identity["branch_of"] = {"run": long_run.name, "fingerprint": fingerprint(long_recipe, "train")}
    record = rung.layout.root / RUNG_RECORD
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = None
    if previous != identity:
        for stale in (rung.layout.final, rung.layout.checkpoints, rung.layout.evals):
            shutil.rmtree(stale, ignore_errors=True)
        rung.layout.metrics.unlink(missing_ok=True)
        write_text_atomic(record, json.dumps(identity))
    if long_recipe is None or ckpt.list_checkpoints(rung.layout.checkpoints):
        return "auto"
    start = long_recipe.layout.checkpoint(run.decay_start)
    if not ckpt.is_complete(start):
        raise LadderError(
            f"ladder rung {run.name}: branch point {start} of long run {run.branch_of} is missing; "
            f"delete {long_recipe.layout.final} and re-run `pretrain ladder` to retrain it"
        )
    return str(start)


def _final_validation(rung: Recipe, run: Run) -> dict:
    records = [r for r in validation_records(read_records(rung.layout.metrics)) if r["step"] == run.steps]
    if not records:
        raise LadderError(
            f"ladder rung {run.name}: {rung.layout.metrics} has no validation at its last step {run.steps}; "
            f"delete {rung.layout.final} and re-run `pretrain ladder`"
        )
    return records[-1]


def _train_rung(recipe: Recipe, design: LadderDesign, run: Run) -> tuple[Recipe, bool]:
    """Train one rung unless it is current; returns its recipe and whether it trained now."""
    rung = rung_recipe(recipe, design, run)
    link_data_stages(recipe, rung)
    if world_size() > 1:  # the main process tidies the folder first; then every rank finds it tidy
        state = partial_state()
        if state.is_main_process:
            _rung_resume(recipe, design, run, rung)
        state.wait_for_everyone()
    resume = _rung_resume(recipe, design, run, rung)
    if is_current(rung, "train"):
        return rung, False
    try:
        run_stage(rung, "train", resume=resume)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a rung is reported as that rung's
        detail = str(exc) if isinstance(exc, PretrainError) else f"{type(exc).__name__}: {exc}"
        raise LadderError(
            f"ladder rung {run.name} ({run.shape.describe()}, {run.steps} steps) failed in "
            f"{rung.layout.root}: {detail}. Finished rungs are kept; fix the cause and re-run `pretrain ladder`"
        ) from exc
    return rung, True


def _stable_points(rung: Recipe, run: Run) -> list[dict]:
    """The long run's validations at the peak lr (after warmup, before its decay)."""
    return [
        {"params": run.non_embedding_params, "tokens": r["tokens_seen"], "loss": r["val/loss"]}
        for r in validation_records(read_records(rung.layout.metrics))
        if run.warmup_steps < r["step"] <= run.decay_start
    ]


def _seconds(rung: Recipe) -> float | None:
    records = read_records(rung.layout.metrics)
    times = [r["time"] for r in records if "time" in r]
    return round(times[-1] - times[0], 1) if len(times) > 1 else None


def _run_data_stages(recipe: Recipe) -> None:
    """The recipe's data stages, once for all rungs (skipped when current)."""
    for name in (n for n, st in STAGES.items() if st.main_process_only):
        run_stage(recipe, name)


def _require_data_stages(recipe: Recipe, step: str) -> None:
    """An array task or the fit job finds the data stages done (the submitting `pretrain ladder` ran them)."""
    for name in (n for n, st in STAGES.items() if st.main_process_only):
        if not is_current(recipe, name):
            raise StageError(
                f"ladder {step}: the recipe's {name} stage is not current in {recipe.layout.root}; run "
                f"`pretrain ladder {recipe.source_label}` (it runs the data stages before submitting the rungs)"
            )


def _design(recipe: Recipe, budget: float | None, gpu_hours: float | None, gpu: str | None) -> LadderDesign:
    flops = budget_flops(budget, gpu_hours, gpu, recipe.plan.mfu) if budget or gpu_hours else None
    return design_ladder(recipe, flops)


def _log_design(design: LadderDesign) -> None:
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


def _train_runs(recipe: Recipe, design: LadderDesign, runs: list[Run]) -> None:
    """Train `runs` in order (each skipped when current), logging which rung runs and the time left."""
    trained_flops, trained_seconds = 0.0, 0.0
    for index, run in enumerate(runs):
        remaining = sum(r.flops for r in runs[index:])
        eta = (
            f"~{format_seconds(remaining * trained_seconds / trained_flops)} left"
            if trained_flops
            else "time left known after the first rung"
        )
        log.info(
            "ladder: rung %d/%d %s — %s, %s params, %s tokens%s — %s",
            index + 1,
            len(runs),
            run.name,
            run.shape.describe(),
            human(run.non_embedding_params),
            human(run.tokens),
            f", branch of {run.branch_of} at step {run.decay_start}" if run.branch_of else "",
            eta,
        )
        began = time.monotonic()
        rung, trained = _train_rung(recipe, design, run)
        if trained:
            trained_flops += run.flops
            trained_seconds += time.monotonic() - began
        else:
            log.info("ladder: rung %s is up to date (%s) — skipping", run.name, rung.layout.final)


def _rung_results(recipe: Recipe, design: LadderDesign) -> tuple[list[RungResult], list[dict]]:
    """Every rung's final validation (and the long runs' peak-lr points), in design order, from the rung
    folders; a rung that is not current (never trained, failed, or trained as something else) is an error."""
    results, stable = [], []
    for run in design.runs:
        rung = rung_recipe(recipe, design, run)
        if not is_current(rung, "train"):
            raise LadderError(
                f"ladder rung {run.name} (size {run.size}) has not finished: {rung.layout.root} has no current "
                f"final/ (its training failed, is still running, or was for another design); see its "
                f"log there, then re-run `pretrain ladder {recipe.source_label}` to train the missing rungs"
            )
        final = _final_validation(rung, run)
        results.append(RungResult(run, final["val/loss"], final.get("val/bpb"), _seconds(rung)))
        if run.branch_of is None:
            stable += _stable_points(rung, run)
    return results, stable


def run_ladder(
    recipe: Recipe,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
) -> Path | None:
    """Design, train and fit the ladder; returns `ladder/fit.json` (None on non-main ranks)."""
    _run_data_stages(recipe)
    design = _design(recipe, budget, gpu_hours, gpu)
    _log_design(design)
    start = time.monotonic()
    _train_runs(recipe, design, design.runs)
    if world_size() > 1:
        state = partial_state()
        state.wait_for_everyone()
        if not state.is_main_process:
            return None
    results, stable = _rung_results(recipe, design)
    return _fit_and_report(recipe, design, results, stable, time.monotonic() - start)


def train_size(
    recipe: Recipe,
    size_index: int,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
) -> list[Run]:
    """One array task: size `size_index`'s long run, then its branches (each cached and resumable)."""
    _require_data_stages(recipe, f"--size-index {size_index}")
    design = _design(recipe, budget, gpu_hours, gpu)
    sizes = len(design.long_runs())
    if not 0 <= size_index < sizes:
        raise LadderError(
            f"ladder --size-index {size_index}: the ladder of {recipe.source_label} has {sizes} sizes "
            f"(0-{sizes - 1}); the job array must be --array=0-{sizes - 1} (re-run `pretrain ladder` to resubmit)"
        )
    runs = [r for r in design.runs if r.size == size_index]  # design order: the long run first
    _train_runs(recipe, design, runs)
    return runs


def fit_ladder(
    recipe: Recipe,
    budget: float | None = None,
    gpu_hours: float | None = None,
    gpu: str | None = None,
    launcher: str = SLURM_LAUNCHER,
) -> Path:
    """The fit job: fit.json, report and plot from the rungs' folders; clears the submission record."""
    _require_data_stages(recipe, "--fit-only")
    design = _design(recipe, budget, gpu_hours, gpu)
    results, stable = _rung_results(recipe, design)
    path = _fit_and_report(recipe, design, results, stable, sum(r.seconds or 0.0 for r in results), launcher)
    _submitted_path(recipe).unlink(missing_ok=True)  # the submission is done: a re-run may submit again
    return path


def _submitted_path(recipe: Recipe) -> Path:
    return recipe.layout.ladder / SLURM_DIR / SUBMITTED


def _task_command(recipe: Recipe, args, flag: list[str]) -> list[str]:
    """`pretrain ladder` as the user ran it (absolute paths, same overrides and budget), plus `flag`."""
    source = recipe.path.resolve() if recipe.path else Path(args.recipe).resolve()  # a shipped name, resolved
    command = ["python", "-m", "pretrain", "ladder", str(source)]
    command += ["--output-dir", str(recipe.layout.root.resolve())]
    for override in args.overrides:
        command += ["--set", override]
    for name in ("budget_flops", "budget_gpu_hours", "gpu"):
        if getattr(args, name) is not None:
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if getattr(args, "num_processes", None) is not None:
        command += ["--num-processes", str(args.num_processes)]
    if getattr(args, "no_relaunch", False):
        command.append("--no-relaunch")
    return [*command, *flag]


def submit_ladder(recipe: Recipe, args) -> tuple[str, str] | None:
    """Submit the rungs' job array and the fit job after it; returns their ids, or None when every rung is
    current already (then the fit is written here)."""
    submitted = _submitted_path(recipe)
    if submitted.exists():
        jobs = json.loads(submitted.read_text())
        raise PretrainError(
            f"ladder: jobs {jobs['rungs']} (rungs) and {jobs['fit']} (fit) were submitted at {jobs['at']} and "
            f"have not written {recipe.layout.ladder_fit} yet; wait for them (squeue -j {jobs['rungs']},"
            f"{jobs['fit']}). If a task failed (the fit job then stays pending: DependencyNeverSatisfied) or they "
            f"were cancelled: scancel {jobs['fit']}, delete {submitted} and run `pretrain ladder` again (finished "
            "rungs are kept, interrupted ones resume)"
        )
    machines = (recipe.accelerate_settings() or {}).get("num_machines") or 1
    if machines > 1:  # each array task is one node: a multi-node launch would wait for peers forever
        raise LadderError(
            f"ladder.executor slurm: {recipe.accelerate_config} asks for {machines} machines, but each array "
            "task (one size) runs on one node; rungs are small: use a one-node accelerate config for the ladder "
            "(--set accelerate_config=...)"
        )
    _run_data_stages(recipe)
    design = _design(recipe, args.budget_flops, args.budget_gpu_hours, args.gpu)
    _log_design(design)
    if all(is_current(rung_recipe(recipe, design, run), "train") for run in design.runs):
        log.info("ladder: every rung is up to date — fitting here, nothing to submit")
        fit_ladder(recipe, args.budget_flops, args.budget_gpu_hours, args.gpu)
        return None
    settings = recipe.ladder.slurm
    folder = (recipe.layout.ladder / SLURM_DIR).resolve()  # the nodes' jobs may start elsewhere
    workdir = Path.cwd()
    sizes = len(design.long_runs())
    rungs_id = submit(
        sbatch_script(
            settings,
            job_name=f"{recipe.name}-ladder-rungs",
            command=_task_command(recipe, args, ["--size-index", "$SLURM_ARRAY_TASK_ID"]),
            log=folder / "logs" / "rungs-%A_%a.out",
            workdir=workdir,
            array=f"0-{sizes - 1}",
            gpus_per_task=settings.gpus_per_task,
        ),
        folder / "rungs.sbatch",
    )
    fit_id = submit(
        sbatch_script(
            settings,
            job_name=f"{recipe.name}-ladder-fit",
            command=_task_command(recipe, args, ["--fit-only"]),
            log=folder / "logs" / "fit-%j.out",
            workdir=workdir,
            depends_on=rungs_id,
            cpus_per_task=1,
        ),
        folder / "fit.sbatch",
    )
    write_text_atomic(
        submitted, json.dumps({"rungs": rungs_id, "fit": fit_id, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    )
    return rungs_id, fit_id


def _all_params_view(recipe: Recipe, design: LadderDesign, results: list[RungResult]) -> dict | None:
    """The same points fitted with N = all parameters (Chinchilla's convention) instead of non-embedding ones.

    The law of record counts non-embedding parameters (Kaplan et al.): the rungs change width and depth,
    and with a 4,096-token tied embedding the embedding is 50-80 % of a small rung's parameters, which would
    compress a 13x span in size to 5x. But compute-optimal tokens per parameter are only comparable with
    Chinchilla's 20 when N counts what Chinchilla counted (Pearce & Song 2024 trace much of the Kaplan /
    Chinchilla gap to this): the report gives both. None for a budget target (no recipe model to count).
    """
    if not design.target_source.startswith("the recipe"):
        return None
    vocab, _ = recipe_vocab(recipe)
    target_params, _ = count_parameters(build_hf_config(recipe, vocab))
    try:
        fit = _fit_rungs(recipe, results, all_params=True)
        optimum = compute_optimal(fit, 6.0 * target_params * design.target_tokens)
    except PretrainError:  # DataError: too few points; no optimum: an exponent at 0
        return None
    forecast = predict(fit, target_params, design.target_tokens)
    return {
        "params": target_params,
        "law": asdict(fit.law),
        "forecast": asdict(forecast),
        "tokens_per_param": asdict(optimum.tokens_per_param),
    }


def _fit_rungs(recipe: Recipe, results: list[RungResult], all_params: bool) -> ScalingFit:
    """L(N, D) over the rungs' final losses, N their non-embedding (or, Chinchilla's way, all) parameters."""
    return fit_scaling_law(
        [r.run.params if all_params else r.run.non_embedding_params for r in results],
        [r.run.tokens for r in results],
        [r.final_loss for r in results],
        bootstrap=BOOTSTRAP,
        seed=recipe.seed,
    )


def _fit_and_report(
    recipe: Recipe,
    design: LadderDesign,
    results: list[RungResult],
    stable: list[dict],
    seconds: float,
    launcher: str = LOCAL_LAUNCHER,
) -> Path:
    layout = recipe.layout
    try:
        fit = _fit_rungs(recipe, results, all_params=False)
    except DataError as exc:
        raise LadderError(f"ladder fit ({len(results)} rungs): {exc}") from exc
    try:
        stable_fit = fit_scaling_law(
            [p["params"] for p in stable],
            [p["tokens"] for p in stable],
            [p["loss"] for p in stable],
            bootstrap=BOOTSTRAP,
            seed=recipe.seed,
        )
    except DataError as exc:  # mid-run checks then compare the final loss only
        log.warning("ladder: no peak-lr law (%s); the run's checks will use the final forecast only", exc)
        stable_fit = None
    backtest = backtest_largest_size(
        [r.run.non_embedding_params for r in results],
        [r.run.tokens for r in results],
        [r.final_loss for r in results],
        bootstrap=BOOTSTRAP,
        seed=recipe.seed,
    )
    all_params = _all_params_view(recipe, design, results)
    manifest = TokenManifest.read_optional(layout.tokens)
    val = manifest.splits.get("val") if manifest else None
    record = LadderRecord(
        target={
            "non_embedding_params": design.target_non_embedding_params,
            "tokens": design.target_tokens,
            "source": design.target_source,
            "all_params_view": all_params,
        },
        design={
            "global_batch_tokens": design.global_batch_tokens,
            "micro_batch_size": design.micro_batch_size,
            "decay_fraction": design.decay_fraction,
            "flops": design.flops,
        },
        rungs=results,
        stable_points=stable,
        bytes_per_token=val.bytes_per_token if val else None,
        # the rungs' own wall time (from their logs): a re-run that finds them current takes seconds
        seconds=round(sum(r.seconds or 0.0 for r in results), 1),
        data_fingerprint=(read_marker(layout.tokens) or {}).get("fingerprint"),
        launcher=launcher,
        backtest=None
        if backtest is None
        else {
            "params": backtest.params,
            "tokens": backtest.tokens,
            "actual": backtest.actual,
            "predicted": backtest.predicted.value,
            "low": backtest.predicted.low,
            "high": backtest.predicted.high,
        },
    )
    layout.ladder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(layout.ladder_fit, fit.to_json())
    if stable_fit is not None:
        write_text_atomic(layout.ladder_stable_fit, stable_fit.to_json())
    else:
        layout.ladder_stable_fit.unlink(missing_ok=True)
    write_record(layout, record)
    write_plot(fit, record, layout.ladder_plot)
    write_report(recipe, fit, stable_fit, record, layout)
    law = fit.law
    log.info(
        "ladder: done in %s — L(N, D) = %.3f + %.4g/N^%.3f + %.4g/D^%.3f -> %s",
        format_seconds(seconds),
        law.E,
        law.A,
        law.alpha,
        law.B,
        law.beta,
        layout.ladder_report,
    )
    return layout.ladder_fit


def run_ladder_command(args, recipe: Recipe) -> int:
    for name in ("budget_flops", "budget_gpu_hours"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise PretrainError(f"ladder: --{name.replace('_', '-')} must be positive, got {value}")
    if args.budget_flops is not None and args.budget_gpu_hours is not None:
        raise PretrainError("ladder: give --budget-flops or --budget-gpu-hours, not both")
    if args.budget_gpu_hours is not None and not args.gpu:
        raise PretrainError("ladder: --budget-gpu-hours needs --gpu (e.g. --gpu h100)")
    budget = (args.budget_flops, args.budget_gpu_hours, args.gpu)
    if args.size_index is not None and args.fit_only:
        raise PretrainError("ladder: give --size-index or --fit-only, not both")
    if args.size_index is not None:
        runs = train_size(recipe, args.size_index, *budget)
        if world_size() == 1 or partial_state().is_main_process:
            print(f"ladder: size {args.size_index} trained ({', '.join(r.name for r in runs)})")
        return 0
    if args.fit_only:
        path = fit_ladder(recipe, *budget)
    elif recipe.ladder.executor == "slurm":
        jobs = submit_ladder(recipe, args)
        if jobs is not None:
            rungs_id, fit_id = jobs
            folder = recipe.layout.ladder / SLURM_DIR
            print(
                f"ladder: submitted to Slurm: rungs job array {rungs_id} ({len(_design(recipe, *budget).long_runs())} "
                f"tasks, one per size), fit job {fit_id} after it; scripts and logs under {folder}. When they "
                f"finish, {recipe.layout.ladder_fit} is written and `pretrain plan` uses it"
            )
            sys.stdout.flush()
            return 0
        path = recipe.layout.ladder_fit
    else:
        path = run_ladder(recipe, *budget)
    if path is not None:
        print(f"ladder: fit {path}, report {recipe.layout.ladder_report}")
    return 0

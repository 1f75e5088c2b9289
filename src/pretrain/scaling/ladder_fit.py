"""The ladder's fit: the recipe's law L(N, D) from its rungs' final validations, and every file that reports it.

    fit_and_report(recipe, design, results, stable_points, seconds, launcher)

Outputs (core/layout.py): `ladder/fit.json` (final losses; scaling/law.py owns the format), `ladder/fit_stable.json`
(peak-lr losses of the long runs, for mid-run checks), `ladder/ladder.json` (scaling/ladder_record.py),
`ladder/report.md` and `ladder/loss_vs_compute.png` (scaling/ladder_report.py). The rungs are trained by
`pretrain ladder` (commands/ladder.py); this module only reads their results.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import DataError, PretrainError
from pretrain.core.markers import read_marker
from pretrain.core.progress import format_seconds, get_logger
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.scaling.fit import backtest_largest_size, compute_optimal, fit_scaling_law, predict
from pretrain.scaling.ladder import LadderDesign, LadderError, recipe_vocab
from pretrain.scaling.ladder_record import LadderRecord, RungResult, write_record
from pretrain.scaling.ladder_report import write_plot, write_report
from pretrain.scaling.law import ScalingFit
from pretrain.tokens.manifest import TokenManifest

log = get_logger("pretrain.ladder")

BOOTSTRAP = 200
LOCAL_LAUNCHER = "local, sequential"
SLURM_LAUNCHER = "Slurm job array, a task per size"


def all_params_view(recipe: Recipe, design: LadderDesign, results: list[RungResult]) -> dict | None:
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
        fit = fit_rungs(recipe, results, all_params=True)
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


def fit_rungs(recipe: Recipe, results: list[RungResult], all_params: bool) -> ScalingFit:
    """L(N, D) over the rungs' final losses, N their non-embedding (or, Chinchilla's way, all) parameters."""
    return fit_scaling_law(
        [r.run.params if all_params else r.run.non_embedding_params for r in results],
        [r.run.tokens for r in results],
        [r.final_loss for r in results],
        bootstrap=BOOTSTRAP,
        seed=recipe.seed,
    )


def fit_and_report(
    recipe: Recipe,
    design: LadderDesign,
    results: list[RungResult],
    stable: list[dict],
    seconds: float,
    launcher: str = LOCAL_LAUNCHER,
) -> Path:
    layout = recipe.layout
    try:
        fit = fit_rungs(recipe, results, all_params=False)
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
    all_params = all_params_view(recipe, design, results)
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

"""The ladder's report (`ladder/report.md`) and plot (`ladder/loss_vs_compute.png`).

The plot shows each rung's final loss against its compute C = 6·N·D, the fitted law along each size,
the fitted compute-optimal frontier with its bootstrap band, and the forecast of the target run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pretrain.config import Recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.layout import RunLayout
from pretrain.core.progress import format_seconds, human
from pretrain.scaling.chinchilla import TOKENS_PER_PARAM
from pretrain.scaling.ladder_record import LadderRecord
from pretrain.scaling.law import Estimate, ScalingFit, compute_optimal, predict


def _interval(e: Estimate, fmt: str = "{:.4g}") -> str:
    return f"{fmt.format(e.value)} [{fmt.format(e.low)}, {fmt.format(e.high)}]"


def write_plot(fit: ScalingFit, record: LadderRecord, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target_n, target_d = record.target["non_embedding_params"], record.target["tokens"]
    compute = [6.0 * r.run.non_embedding_params * r.run.tokens for r in record.rungs]
    low, high = min(compute) / 2, max(max(compute), 6 * target_n * target_d) * 3
    grid = np.geomspace(low, high, 80)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sizes = sorted({r.run.non_embedding_params for r in record.rungs})
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(sizes)))
    for size, color in zip(sizes, colors):
        rungs = [r for r in record.rungs if r.run.non_embedding_params == size]
        ax.scatter(
            [6.0 * size * r.run.tokens for r in rungs],
            [r.final_loss for r in rungs],
            color=color,
            zorder=3,
            label=f"N = {human(size)}",
        )
        ax.plot(grid, fit.law.loss(size, grid / (6.0 * size)), color=color, lw=0.8, ls="--")
    frontier = [compute_optimal(fit, c).loss for c in grid]
    ax.plot(grid, [e.value for e in frontier], color="black", lw=1.5, label="compute-optimal frontier (fit)")
    ax.fill_between(grid, [e.low for e in frontier], [e.high for e in frontier], color="black", alpha=0.12)
    forecast = predict(fit, target_n, target_d)
    target_c = 6.0 * target_n * target_d
    ax.errorbar(
        [target_c],
        [forecast.value],
        yerr=[[max(0.0, forecast.value - forecast.low)], [max(0.0, forecast.high - forecast.value)]],
        fmt="*",
        color="crimson",
        ms=12,
        capsize=4,
        label=f"forecast: N = {human(target_n)}, D = {human(target_d)}",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = 6·N·D (FLOPs, non-embedding N)")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_markdown(
    recipe: Recipe, fit: ScalingFit, stable_fit: ScalingFit | None, record: LadderRecord, layout: RunLayout
) -> str:
    iv = fit.intervals
    target_n, target_d = record.target["non_embedding_params"], record.target["tokens"]
    target_c = 6.0 * target_n * target_d
    forecast = predict(fit, target_n, target_d)
    optimum = compute_optimal(fit, target_c)
    lines = [
        f"# Scaling-law ladder of `{recipe.name}`",
        "",
        f"{len(record.rungs)} runs of {len({r.run.size for r in record.rungs})} sizes of the recipe's model "
        f"family, trained on the recipe's own mix, tokenizer and packed tokens ({record.launcher}; "
        f"{format_seconds(record.seconds or 0)} of training wall time, {record.design['flops']:.3g} training FLOPs).",
        f"Target: {record.target['source']}: {human(target_n)} non-embedding parameters on {human(target_d)} "
        f"tokens ({target_c:.3g} FLOPs as 6ND).",
        "Launcher: `ladder.executor: local` trains the rungs one after another on this machine (or its "
        "`accelerate launch`); `ladder.executor: slurm` submits one job array, a task per size, and the fit "
        "job after it.",
        "",
        "## Rungs",
        "",
        "| run | shape | non-emb params | steps | tokens | tokens/param | from | final val loss | bits/byte |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in record.rungs:
        run = r.run
        origin = f"branch of {run.branch_of} at step {run.decay_start}" if run.branch_of else "long run"
        bpb = f"{r.final_bpb:.4f}" if r.final_bpb else "n/a"
        lines.append(
            f"| {run.name} | {run.shape.describe()} | {run.non_embedding_params:,} | {run.steps} | "
            f"{run.tokens:,} | {run.tokens / run.non_embedding_params:.1f} | {origin} | {r.final_loss:.4f} | {bpb} |"
        )
    lines += [
        "",
        "## Fit",
        "",
        "L(N, D) = E + A/N^α + B/D^β, N non-embedding parameters, D tokens (Hoffmann et al. 2022 approach 3:",
        f"Huber loss on log-loss, grid of starts, {len(fit.bootstrap)} bootstrap refits; intervals "
        f"{fit.percentiles[0]:g}–{fit.percentiles[1]:g} %).",
        "",
        "| parameter | value | interval | Chinchilla |",
        "|---|---:|---|---:|",
    ]
    chinchilla = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    for name in ("E", "A", "B", "alpha", "beta"):
        e = iv[name]
        lines.append(f"| {name} | {e.value:.4g} | [{e.low:.4g}, {e.high:.4g}] | {chinchilla[name]} |")
    if fit.at_bounds:
        lines += [
            "",
            f"On the fit's bounds (not determined by these rungs): {', '.join(fit.at_bounds)}; read the forecast's "
            "interval and the backtest rather than these parameters.",
        ]
    bpb = record.bpb(forecast.value)
    lines += [
        "",
        f"Compute-optimal at the target's {target_c:.3g} FLOPs: {human(optimum.params.value)} non-embedding parameters on "
        f"{human(optimum.tokens.value)} tokens, {_interval(optimum.tokens_per_param, '{:.3g}')} tokens per "
        f"parameter (Chinchilla: {TOKENS_PER_PARAM:g}).",
        "",
        f"Forecast of the target's final validation loss: {_interval(forecast)} nats/token"
        + (
            f", {bpb:.4f} [{record.bpb(forecast.low):.4f}, {record.bpb(forecast.high):.4f}] bits/byte."
            if bpb
            else "."
        ),
    ]
    view = record.target.get("all_params_view")
    if view:
        law, tpp, f = view["law"], view["tokens_per_param"], view["forecast"]
        lines += [
            "",
            f"Counting all parameters (embeddings too, Chinchilla's convention; the target has {human(view['params'])}): "
            f"L = {law['E']:.4g} + {law['A']:.4g}/N^{law['alpha']:.3f} + {law['B']:.4g}/D^{law['beta']:.3f}, "
            f"compute-optimal at {tpp['value']:.3g} [{tpp['low']:.3g}, {tpp['high']:.3g}] tokens per parameter "
            f"(Chinchilla: {TOKENS_PER_PARAM:g}), forecast {f['value']:.4f} [{f['low']:.4f}, {f['high']:.4f}].",
        ]
    if record.backtest:
        b = record.backtest
        miss = (b["predicted"] - b["actual"]) / b["actual"]
        lines += [
            "",
            f"Backtest (the same extrapolation one rung down): fitted without the largest size, the law forecasts "
            f"its longest run ({human(b['params'])} params, {human(b['tokens'])} tokens) at {b['predicted']:.4f} "
            f"[{b['low']:.4f}, {b['high']:.4f}]; it reached {b['actual']:.4f} ({100 * miss:+.1f} %).",
        ]
    if stable_fit is not None:
        s = stable_fit.law
        lines += [
            "",
            f"Peak-lr law (long runs' validations before their decay, {len(stable_fit.losses)} points), used to "
            f"check a run mid-way: L = {s.E:.4g} + {s.A:.4g}/N^{s.alpha:.3f} + {s.B:.4g}/D^{s.beta:.3f}.",
        ]
    lines += ["", f"![loss vs compute]({layout.ladder_plot.name})", ""]
    return "\n".join(lines)


def write_report(
    recipe: Recipe, fit: ScalingFit, stable_fit: ScalingFit | None, record: LadderRecord, layout: RunLayout
) -> Path:
    write_text_atomic(layout.ladder_report, report_markdown(recipe, fit, stable_fit, record, layout))
    return layout.ladder_report

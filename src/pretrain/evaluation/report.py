"""Learning curves: every evaluation of a run as a table and a plot against tokens seen.

`evals/summary.json` (read by the model card): `{"metrics": [names], "rows": [{"step", "tokens_seen",
"checkpoint", "<metric>": value, ...}], "final": {metric: value}, "tasks": {task: facts},
"plot": "learning_curves.png"}` with the metrics every view shows (evaluation/metrics.py) and each task's
facts (Hub dataset id, split, shots, chance level) from the newest record that has them; `evals/summary.md`
is the same table in markdown; `evals/learning_curves.png` has one panel per metric, accuracies with a dashed
chance line, perplexities on a log axis.
"""

from __future__ import annotations

from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.layout import RunLayout
from pretrain.evaluation.metrics import is_accuracy, is_perplexity, is_reported, split_key
from pretrain.evaluation.records import read_records_in


def summarize_run(out_dir: Path, folder: Path | None = None) -> dict:
    """The summary, table and plot of the records in the run's `evals/`, or in `folder` (`pretrain eval`'s
    own records), written beside them under the same names."""
    layout = RunLayout(Path(out_dir))
    folder = layout.evals if folder is None else Path(folder)
    rows, tasks = [], {}
    for rec in sorted(read_records_in(folder), key=lambda r: r.step):
        values = {k: v for k, v in rec.metrics.items() if is_reported(k)}
        rows.append(
            {"step": rec.step, "tokens_seen": rec.tokens_seen, "checkpoint": rec.checkpoint, **values}
        )
        tasks.update(rec.task_facts)
    metrics = sorted({k for r in rows for k in r if k.startswith("eval/")})
    summary = {
        "metrics": metrics,
        "rows": rows,
        "final": {m: rows[-1].get(m) for m in metrics} if rows else {},
        "tasks": tasks,
        "plot": "learning_curves.png" if rows else None,
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / layout.eval_summary_json.name, summary)
    (folder / layout.eval_summary_md.name).write_text(markdown_table(summary), encoding="utf-8")
    if rows:
        plot_curves(summary, folder / layout.learning_curves.name)
    return summary


def markdown_table(summary: dict) -> str:
    metrics = summary["metrics"]
    if not summary["rows"]:
        return "No evaluations recorded.\n"
    head = "| step | tokens | " + " | ".join(m.removeprefix("eval/") for m in metrics) + " |"
    lines = [head, "|" + "---:|" * (len(metrics) + 2)]
    for r in summary["rows"]:
        cells = [f"{r[m]:.4f}" if isinstance(r.get(m), float) else "" for m in metrics]
        lines.append(f"| {r['step']} | {r['tokens_seen'] or 0:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(summary: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(summary)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves_figure(summary: dict):
    """The learning-curve figure: one panel per metric against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = summary["metrics"]
    cols = min(3, len(metrics)) or 1
    rows_n = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.2 * rows_n), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        pts = [
            (r["tokens_seen"] or r["step"], r[metric])
            for r in summary["rows"]
            if isinstance(r.get(metric), float)
        ]
        if pts:
            ax.plot(*zip(*pts), marker="o")
        task, name = split_key(metric)
        chance = summary.get("tasks", {}).get(task, {}).get("chance")
        if is_accuracy(name) and chance:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
            ax.legend(fontsize=7, loc="best")
        if is_perplexity(name):
            ax.set_yscale("log")
        ax.set_title(metric.removeprefix("eval/"), fontsize=9)
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig

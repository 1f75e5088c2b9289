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


def summarize_run(out_dir: Path, folder: Path | None = None, validation: list[dict] | None = None) -> dict:
    """The summary, table and plot of the records in the run's `evals/`, or in `folder` (`pretrain eval`'s
    own records), written beside them under the same names.

    `validation`: the run's validation passes (`{"step", "tokens_seen", "bits_per_byte"}`), shown as the
    held-out bits/byte column and panel: the one loss figure comparable across tokenizers, which the
    evaluations alone left out."""
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
        "plot": "learning_curves.png" if rows or validation else None,
        "validation": [v for v in validation or [] if v.get("bits_per_byte") is not None],
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / layout.eval_summary_json.name, summary)
    (folder / layout.eval_summary_md.name).write_text(markdown_table(summary), encoding="utf-8")
    if rows or summary["validation"]:
        plot_curves(summary, folder / layout.learning_curves.name)
    return summary


def markdown_table(summary: dict) -> str:
    """One row per evaluated or validated step: the metrics, and the held-out bits/byte where measured."""
    metrics = summary["metrics"]
    bpb = {v["step"]: v for v in summary.get("validation", [])}
    if not summary["rows"] and not bpb:
        return "No evaluations recorded.\n"
    rows = {r["step"]: r for r in summary["rows"]}
    columns = ["step", "tokens", *(m.removeprefix("eval/") for m in metrics)] + (
        ["val bits/byte"] if bpb else []
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for step in sorted(rows.keys() | bpb.keys()):
        r = rows.get(step, {})
        cells = [f"{r[m]:.4f}" if isinstance(r.get(m), float) else "" for m in metrics]
        if bpb:
            cells.append(f"{bpb[step]['bits_per_byte']:.4f}" if step in bpb else "")
        tokens = r.get("tokens_seen") or bpb.get(step, {}).get("tokens_seen") or 0
        lines.append(f"| {step} | {tokens:,} | " + " | ".join(cells) + " |")
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
    validation = summary.get("validation", [])
    panels = len(metrics) + bool(validation)
    cols = min(3, panels) or 1
    rows_n = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.5 * cols, 3.2 * rows_n), squeeze=False)
    if validation:
        ax = list(axes.flat)[len(metrics)]
        ax.plot(
            [v["tokens_seen"] or v["step"] for v in validation],
            [v["bits_per_byte"] for v in validation],
            marker="o",
        )
        ax.set_title("validation bits/byte (held out)", fontsize=9)
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3)
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
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    return fig

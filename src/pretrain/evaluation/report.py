"""Learning curves: every evaluation of a run as a table and a plot against tokens seen.

`evals/summary.json` (read by the model card): `{"metrics": [names], "rows": [{"step", "tokens_seen",
"checkpoint", "<metric>": value, ...}], "final": {metric: value}, "plot": "learning_curves.png"}`;
`evals/summary.md` is the same table in markdown; `evals/learning_curves.png` has one panel per metric.
"""

from __future__ import annotations

from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import read_eval_records


def summarize_run(out_dir: Path) -> dict:
    layout = RunLayout(Path(out_dir))
    rows = []
    for rec in read_eval_records(layout):
        rows.append(
            {"step": rec.step, "tokens_seen": rec.tokens_seen, "checkpoint": rec.checkpoint, **rec.metrics}
        )
    rows.sort(key=lambda r: r["step"])
    metrics = sorted({k for r in rows for k in r if k.startswith("eval/")})
    summary = {
        "metrics": metrics,
        "rows": rows,
        "final": {m: rows[-1].get(m) for m in metrics} if rows else {},
        "plot": "learning_curves.png" if rows else None,
    }
    layout.evals.mkdir(parents=True, exist_ok=True)
    write_json_atomic(layout.eval_summary_json, summary)
    layout.eval_summary_md.write_text(markdown_table(summary), encoding="utf-8")
    if rows:
        plot_curves(summary, layout.learning_curves)
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
        ax.set_title(metric.removeprefix("eval/"), fontsize=9)
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

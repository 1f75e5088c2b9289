"""`pretrain watch OUTPUT_DIR`: a live terminal view of a run against its forecast.

    pretrain watch outputs/tiny              # refreshes every 5 s until Ctrl-C (or the run finishes)
    pretrain watch outputs/tiny --once       # one plain-text view, for logs and CI

The view (rich for the layout, plotext for the curve): the run's status, step, tokens, tokens/s, MFU and ETA;
the training loss and the validation loss against tokens, with the ladder forecast's band at each validation
when the run has one; validation bits/byte; the newest evaluations with their standard errors; skipped steps,
rollbacks and restarts. Everything comes from the files the run writes (watch_state.py), so it works over ssh
and on a shared filesystem, while the run trains or after it. rich and plotext are imported when the command
runs: the other commands do not pay for them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pretrain.commands.watch_state import RunState, read_run
from pretrain.core.progress import get_logger

log = get_logger("pretrain.watch")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{int(seconds) % 60:02d}s"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def curve(state: RunState, width: int, height: int, color: bool) -> str:
    """The loss curve (training, validation, forecast band) against tokens, drawn by plotext."""
    import plotext

    figure = plotext.figure
    figure.clear.data()
    figure.plot_size(width, height)
    figure.theme("default" if color else "clear")
    series = [("train loss", state.train_curve, None)]
    series.append(("val loss", state.val_curve, "●"))
    if state.band:
        series.append(("forecast low", [(t, low) for t, low, _ in state.band], "-"))
        series.append(("forecast high", [(t, high) for t, _, high in state.band], "-"))
    for label, points, marker in series:
        if not points:
            continue
        xs, ys = zip(*points)
        signal = figure.signal(list(xs), list(ys), marker=marker)
        signal.label(label)
        if marker is None or marker == "-":
            signal.lines()
        figure.draw(signal)
    figure.label("tokens seen", axis=0)
    return figure.build().string(colorless=not color)


def header_lines(state: RunState) -> list[str]:
    """The run's figures, one line each."""
    progress = f"step {state.step:,}" + (f" / {state.total_steps:,}" if state.total_steps else "")
    if state.total_steps:
        progress += f" ({100 * state.step / state.total_steps:.0f}%)"
    lines = [
        f"{state.name} ({state.folder}): {state.status}",
        f"{progress}   tokens {state.tokens_seen:,}   loss {_number(state.loss, '.4f')}   "
        f"lr {_number(state.lr, '.2e')}",
        f"tok/s {_number(state.tokens_per_s, ',.0f')}   MFU "
        f"{'-' if state.mfu is None else f'{100 * state.mfu:.1f}%'}   ETA "
        f"{'-' if state.status == 'finished' else _duration(state.eta_s)}",
        f"validation: loss {_number(state.val_loss, '.4f')}   bits/byte {_number(state.val_bpb, '.4f')}",
    ]
    if state.forecast:
        f = state.forecast
        where = "OUTSIDE" if f.get("outside") else "inside"
        lines.append(
            f"forecast ({f.get('phase')}): {_number(f.get('predicted'), '.4f')} "
            f"[{_number(f.get('low'), '.4f')}, {_number(f.get('high'), '.4f')}], actual "
            f"{_number(f.get('actual'), '.4f')}: {where} the band"
        )
    else:
        lines.append("forecast: none (no ladder fit for this run: `pretrain ladder`)")
    lines.append(f"skipped steps {state.skipped}   rollbacks {state.rollbacks}   restarts {state.restarts}")
    return lines


def view(state: RunState, width: int, color: bool):
    """The whole view as one rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    evals = Table(title="newest evaluations", title_justify="left", expand=False)
    for column in ("step", "metric", "value", "± stderr"):
        evals.add_column(column, justify="left" if column == "metric" else "right")
    for row in state.evals:
        spread = "" if row.stderr is None else f"{row.stderr:.4f}"
        evals.add_row(str(row.step), row.metric, f"{row.value:.4f}", spread)
    plot = (
        curve(state, max(40, width - 4), 16, color) if state.train_curve else "(no training steps logged yet)"
    )
    parts = [
        Panel(Text("\n".join(header_lines(state))), title="pretrain watch", expand=True),
        Panel(Text.from_ansi(plot) if color else Text(plot), title="loss vs tokens", expand=True),
        evals if state.evals else Text("no evaluations yet"),
    ]
    return Group(*parts)


def watch(folder: Path, once: bool = False, interval: float = 5.0, width: int | None = None) -> int:
    """`pretrain watch`: the view once (plain text on stdout), or refreshed until Ctrl-C; exit code 0."""
    from rich.console import Console

    folder = Path(folder)
    if once:
        console = Console(width=width or 100, color_system=None, force_terminal=False, highlight=False)
        console.print(view(read_run(folder), console.width, color=False))
        return 0
    from rich.live import Live

    console = Console(highlight=False)
    state = read_run(folder)
    with Live(
        view(state, console.width, color=True), console=console, screen=False, auto_refresh=False
    ) as live:
        try:
            while state.status != "finished":
                time.sleep(interval)
                state = read_run(folder)
                live.update(view(state, console.width, color=True), refresh=True)
        except KeyboardInterrupt:
            return 0
    print(f"{folder}: the run has finished", file=sys.stderr)
    return 0

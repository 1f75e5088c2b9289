"""The console: our log lines, progress with rate and ETA, and where third-party output goes.

- `get_logger(name)`: the `pretrain.*` loggers. Their lines go to the console (the terminal's stderr) on the
  main process, and also to the run's log file while `capture_run_output` is active.
- `Progress` / `progress()`: one long stage's progress. A tqdm bar (rate + ETA) on an interactive main
  process; otherwise — stderr not a terminal, `PRETRAIN_NO_TQDM` set — a log line (count, rate, ETA) every
  30 s, then every tenth of the time elapsed, at most every 10 minutes (`interval_after`), so CI logs and
  `nohup` files stay short whether a stage takes minutes or days; nothing on non-main ranks.
- `capture_run_output(log_file)`: while a command works on a run folder, file descriptor 2 points at the
  run's log file (`RunLayout.log_file`). Whatever libraries print there — lm-eval's and datasets' progress
  bars, transformers' and Python warnings, datatrove's loguru lines, accelerate's notices, also from the
  worker processes a stage starts — is kept in that file instead of flooding the console, while our lines
  and bars keep the terminal (a duplicate of the original stderr), and so does the stack of a native crash
  (`faulthandler`, which the command line turns on).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO, TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 30.0
"""Shortest time between two progress lines when no bar is drawn (`PRETRAIN_PROGRESS_INTERVAL_S`)."""
INTERVAL_GROWTH = 10
"""After the first minutes, a progress line every 1/INTERVAL_GROWTH of the time elapsed..."""
MAX_INTERVAL_FACTOR = 20
"""... but at least one every MAX_INTERVAL_FACTOR x the shortest interval (10 minutes by default)."""

_CONFIGURED = False
_console: TextIO | None = None  # the terminal while fd 2 is captured; None: sys.stderr
_open_bars = 0  # our tqdm bars on the console: log lines are written above them


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def console() -> TextIO:
    """Where our lines and bars go: the terminal's stderr, also while libraries' output is captured."""
    return _console or sys.stderr


def interactive() -> bool:
    """True when progress is drawn as a bar: the console is a terminal and `PRETRAIN_NO_TQDM` is unset."""
    stream = console()
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("PRETRAIN_NO_TQDM")


class _ConsoleHandler(logging.Handler):
    """Writes to `console()` as it is at each line (so capturing fd 2 does not take our lines along), above
    any progress bar of ours."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = console()
            if _open_bars:
                from tqdm import tqdm

                tqdm.write(line, file=stream)
            else:
                stream.write(line + "\n")
                stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into a stage
            self.handleError(record)


def _formatter() -> logging.Formatter:
    rank = os.environ.get("RANK")
    prefix = f"[rank{rank}] " if rank not in (None, "0") else ""
    return logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")


def get_logger(name: str = "pretrain") -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        handler = _ConsoleHandler()
        handler.setFormatter(_formatter())
        root = logging.getLogger("pretrain")
        root.addHandler(handler)
        root.setLevel(logging.INFO if is_main_process() else logging.WARNING)
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name)


# ---------------------------------------------------------------------------------------------- capture


def enable_crash_traces(stream: TextIO) -> bool:
    """Have a native crash print every thread's Python stack on `stream` (False: it has no file descriptor,
    as a test runner's captured stderr)."""
    try:
        faulthandler.enable(file=stream, all_threads=True)
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    return True


@contextlib.contextmanager
def capture_run_output(log_file: Path) -> Iterator[Path]:
    """Send everything written to file descriptor 2 (by this process and the processes it starts) to
    `log_file` (appended), and our own log lines to both the console and `log_file`.

    Nested use is a no-op (the outer capture keeps going). An exception leaving the block is reported on the
    console as usual: the capture ends before it reaches the command line's error handling.
    """
    global _console
    if _console is not None:
        yield log_file
        return
    get_logger()
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    sink = open(log_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    file_handler = logging.StreamHandler(sink)
    file_handler.setFormatter(_formatter())
    saved_fd = os.dup(2)
    terminal = os.fdopen(os.dup(saved_fd), "w", encoding="utf-8", errors="backslashreplace", buffering=1)
    ours = logging.getLogger("pretrain")
    ours.addHandler(file_handler)
    # libraries' log records that reach the root logger (and warnings.warn, through `py.warnings`)
    root_handler = logging.StreamHandler(sink)
    root_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    logging.getLogger().addHandler(root_handler)
    logging.captureWarnings(True)
    os.dup2(sink.fileno(), 2)
    # sys.stderr too, for when it is not fd 2 (a notebook, a test runner): libraries write through it
    saved_stderr, sys.stderr = sys.stderr, sink
    _console = terminal
    # a native crash (SIGSEGV in a kernel or a library) ends the process before any of our lines: its Python
    # stack goes to the console, where the user is looking, not only into the log
    crash_traces = faulthandler.is_enabled()
    enable_crash_traces(terminal)
    try:
        yield log_file
    finally:
        if not (crash_traces and enable_crash_traces(saved_stderr)):
            faulthandler.disable()
        _console = None
        sys.stderr = saved_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(root_handler)
        ours.removeHandler(file_handler)
        file_handler.close()
        sink.close()
        terminal.close()


# ---------------------------------------------------------------------------------------------- progress


def _interval() -> float:
    try:
        return float(os.environ.get("PRETRAIN_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def interval_after(elapsed_s: float, shortest_s: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds until the next progress line, `elapsed_s` into a stage: `shortest_s` for the first minutes,
    then a tenth of the time elapsed, capped at 20 x `shortest_s` — a 3-minute stage logs ~6 lines, a 2-hour
    one ~40, a week-long one a line every 10 minutes."""
    return min(max(shortest_s, elapsed_s / INTERVAL_GROWTH), MAX_INTERVAL_FACTOR * shortest_s)


class Progress:
    """Progress of one long stage: `update(n)` / `update_to(n)`, with optional fields shown beside it.

        with Progress("train", total=200, unit="steps", initial=step) as bar:
            bar.update_to(step, fields={"loss": "6.19", "lr": "3.0e-03"})

    A tqdm bar on an interactive main process; else, on the main process, a log line when
    `interval_after(elapsed, interval_s)` has passed since the last one (`interval_s` default 30 s,
    `PRETRAIN_PROGRESS_INTERVAL_S`) and one when `update_to(..., final=True)` is called:
    `train: 120/200 steps (60%), loss 6.19, lr 3.0e-03, 0.41 steps/s, ETA 3m15s`.
    The rate and ETA count wall time since the bar started, pauses (evaluations, checkpoints) included.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        *,
        initial: int = 0,
        interval_s: float | None = None,
        disable: bool | None = None,
    ):
        global _open_bars
        self.desc, self.total, self.unit = desc, total, unit
        self.quiet = (not is_main_process()) if disable is None else disable
        self.interval_s = _interval() if interval_s is None else interval_s
        self.log = get_logger("pretrain.progress")
        self.n = self.start_n = initial
        self.start = self.last_line = time.monotonic()
        self.fields: dict[str, object] = {}
        self.bar = None
        if not self.quiet and interactive():
            from tqdm import tqdm

            self.bar = tqdm(
                desc=desc, total=total, unit=unit, initial=initial, file=console(), dynamic_ncols=True
            )
            _open_bars += 1

    def update(self, n: int = 1, fields: dict[str, object] | None = None) -> None:
        self.update_to(self.n + n, fields=fields)

    def update_to(self, n: int, *, final: bool = False, fields: dict[str, object] | None = None) -> None:
        """Move to position `n`; `fields` ({name: value}) replace the shown ones; `final` forces a line."""
        delta, self.n = n - self.n, n
        if fields:
            self.fields = fields
        if self.quiet:
            return
        if self.bar is not None:
            if fields:
                self.bar.set_postfix_str(self._fields(), refresh=False)
            self.bar.update(delta)
            return
        now = time.monotonic()
        if final or now - self.last_line >= interval_after(self.last_line - self.start, self.interval_s):
            self.last_line = now
            self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """`desc: n/total unit (pct), fields, rate unit/s, ETA t` — the line logged when no bar is drawn."""
        now = time.monotonic() if now is None else now
        rate = (self.n - self.start_n) / max(now - self.start, 1e-9)
        count = f"{self.n:,}/{self.total:,} {self.unit}" if self.total else f"{self.n:,} {self.unit}"
        parts = [f"{count} ({self.n / self.total:.0%})" if self.total else count]
        if self.fields:
            parts.append(self._fields())
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_seconds((self.total - self.n) / rate)}")
        return f"{self.desc}: " + ", ".join(parts)

    def _fields(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.fields.items())

    def close(self) -> None:
        global _open_bars
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            _open_bars -= 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "it",
    log_every_s: float | None = None,
    disable: bool | None = None,
) -> Iterator[T]:
    """Iterate with a `Progress` (a bar on an interactive main process, else a line every `log_every_s`)."""
    with Progress(desc, total, unit, interval_s=log_every_s, disable=disable) as bar:
        for item in iterable:
            yield item
            bar.update()


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (SI suffixes), for summaries."""
    for suffix in ("", "K", "M", "B", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}" if suffix or isinstance(n, float) else f"{n}{unit}"
        n /= 1000
    return f"{n:.3g}P{unit}"

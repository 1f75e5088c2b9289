"""Logging and progress bars shared by every stage.

A tqdm bar (rate + ETA) on the main process when stderr is a TTY; otherwise, and on non-main
ranks, periodic log lines instead of a bar so CI logs and `nohup` files stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_CONFIGURED = False


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def get_logger(name: str = "pretrain") -> logging.Logger:
    global _CONFIGURED
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        rank = os.environ.get("RANK")
        prefix = f"[rank{rank}] " if rank not in (None, "0") else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        root = logging.getLogger("pretrain")
        root.addHandler(handler)
        root.setLevel(logging.INFO if is_main_process() else logging.WARNING)
        root.propagate = False
        _CONFIGURED = True
    return logging.getLogger(name)


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "it",
    log_every_s: float = 30.0,
    disable: bool | None = None,
) -> Iterator[T]:
    """Iterate with a tqdm bar on an interactive main process, else with a log line every `log_every_s`."""
    quiet = (not is_main_process()) if disable is None else disable
    if not quiet and sys.stderr.isatty() and not os.environ.get("PRETRAIN_NO_TQDM"):
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)
        return
    log = get_logger("pretrain.core.progress")
    start = last = time.monotonic()
    n = 0
    for n, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if not quiet and now - last >= log_every_s:
            last = now
            rate = n / max(now - start, 1e-9)
            eta = f", ETA {format_seconds((total - n) / rate)}" if total and rate > 0 else ""
            of = f"/{total}" if total else ""
            log.info("%s: %d%s %s (%.1f %s/s%s)", desc, n, of, unit, rate, unit, eta)


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

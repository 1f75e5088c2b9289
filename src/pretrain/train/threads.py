"""CPU threads for a training process: as many as the machine has free, not as many as it has cores.

PyTorch starts one intra-op thread per core. On a machine other processes keep busy, those threads wait for
each other at every operation's barrier while the scheduler runs someone else: on the 2-core machine this
project is developed on, at a load of ~14, the tiny recipe trained at 1,123 tok/s with 2 threads and 4,715
tok/s with `OMP_NUM_THREADS=1` (4.2x; issue #31 case 6). So a CPU training process counts the processes
running beside it and takes the cores left over (at least one), saying so in one line. `OMP_NUM_THREADS` set
by the user (or by a launcher: torchrun sets 1 per rank) is always obeyed.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from pretrain.core.progress import get_logger

log = get_logger("pretrain.train")
LOADAVG = Path("/proc/loadavg")


def others_running(samples: int = 5, interval: float = 0.05) -> int | None:
    """Runnable processes other than this one right now (median of a few reads of /proc/loadavg's
    "running/total"); None where the kernel does not say."""
    counts = []
    for _ in range(samples):
        try:
            running = LOADAVG.read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        counts.append(int(running) - 1)  # this process is running while it reads
        time.sleep(interval)
    return max(0, round(statistics.median(counts)))


def cpu_threads(cores: int, default: int, others: int | None) -> int:
    """Intra-op threads for a process that could use `default`: the cores not taken by `others`, at least 1."""
    if others is None:
        return default
    return max(1, min(default, cores - others))


def choose_cpu_threads() -> int | None:
    """Set torch's intra-op threads from the machine's load; returns the count set (None: left as it was)."""
    if os.environ.get("OMP_NUM_THREADS") or torch.cuda.is_available():
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    default = torch.get_num_threads()
    others = others_running()
    threads = cpu_threads(cores, default, others)
    if threads < default:
        torch.set_num_threads(threads)
        log.info(
            "machine busy (%d other processes running on %d cores): training on %d CPU thread%s instead of %d "
            "(set OMP_NUM_THREADS to choose)",
            others,
            cores,
            threads,
            "" if threads == 1 else "s",
            default,
        )
    return threads

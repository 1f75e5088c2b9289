"""A rank blocked in a collective hears SIGTERM (`StopDeadline`, callbacks/preemption.py): torchrun's agent stops
the survivors of a dead worker with SIGTERM, and a Python handler alone would only run once the collective
returns, which it never does. Two gloo ranks: rank 1 stays alive but never joins the all-reduce rank 0 waits in;
SIGTERM to rank 0 must end it within the deadline, with status 128 + 15. Agreement disarms the deadline."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from pretrain.train.callbacks.preemption import StopDeadline

GRACE_S = 1.0


def _rank(rank: int, port: int, ready) -> None:
    dist.init_process_group(
        "gloo",
        store=dist.TCPStore("127.0.0.1", port, 2, is_master=False),
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=120),
    )
    if rank == 1:
        time.sleep(120)  # alive, but never joins the collective
        os._exit(0)
    flagged = []
    signal.signal(
        signal.SIGTERM, lambda signum, frame: flagged.append(signum)
    )  # Preemption's flag-only handler
    StopDeadline(lambda: GRACE_S)
    ready.put(os.getpid())
    dist.all_reduce(torch.ones(1))  # blocks: rank 1 never sends
    os._exit(0)


def test_sigterm_ends_a_rank_blocked_in_a_collective():
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=timedelta(seconds=30))
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, store.port, ready)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        ready.get(timeout=60)
        time.sleep(0.5)  # rank 0 is inside the all-reduce now
        start = time.monotonic()
        os.kill(procs[0].pid, signal.SIGTERM)
        procs[0].join(15)
        waited = time.monotonic() - start
        assert procs[0].exitcode == 128 + signal.SIGTERM, (procs[0].exitcode, waited)
        assert GRACE_S <= waited < GRACE_S + 5
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)


def test_agreement_disarms_the_deadline():
    exits: list[int] = []
    deadline = StopDeadline(lambda: 0.2, exit=exits.append)
    try:
        deadline.agreed()
        os.write(deadline._writer.fileno(), bytes([signal.SIGTERM]))
        time.sleep(0.5)
        assert exits == []
    finally:
        deadline.close()
    armed = StopDeadline(lambda: 0.2, exit=exits.append)
    try:
        os.write(armed._writer.fileno(), bytes([signal.SIGTERM]))
        time.sleep(0.6)
        assert exits == [128 + signal.SIGTERM]
    finally:
        armed.close()

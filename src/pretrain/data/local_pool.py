"""datatrove's LocalPipelineExecutor on a pool that notices a dead worker.

datatrove runs local tasks on a `multiprocess` Pool (`imap_unordered`). When a worker dies without returning (kill -9,
the kernel's OOM killer, a segfault in a native library) the Pool starts a new worker but the dead one's task never
reports, so `run()` waits for ever: `pretrain curate` and `pretrain pack` hung for 600 s and 240 s until killed by hand.
Its Manager process (the queue of free local ranks) is one more process that outlives a killed parent.

`WatchedLocalExecutor` keeps datatrove's per-task behaviour (`_run_for_rank`: logging, stats, completion records)
and replaces only the pool: a `concurrent.futures.ProcessPoolExecutor` on forked workers, which watches every
worker's process sentinel. A worker that dies breaks the pool at once (`BrokenProcessPool`, typically well under a
second; `DEAD_WORKER_BOUND_S` is the bound the docs and tests state), the other workers are stopped, and the stage
fails with one line; a rerun resumes, as finished tasks keep their outputs. Workers are forked from the main thread
and ask the kernel to kill them when the main process dies (core/lifetime.py), so none outlives the command.

Nothing is pickled on the way to a worker but a task's rank: the executor (whose pipeline holds closures) reaches
the forked workers through a module variable set before the pool starts.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from datatrove.executor import LocalPipelineExecutor

from pretrain.core.errors import PretrainError
from pretrain.core.lifetime import die_with_parent

DEAD_WORKER_BOUND_S = 10  # a dead worker fails its stage within this time (the pool notices at once)
_RUNNING: LocalPipelineExecutor | None = None  # the executor whose tasks the forked workers run


class WorkerDied(PretrainError):
    """A worker process of a local data step died without finishing its task (killed, out of memory, crashed)."""


def _run_task(rank: int) -> None:
    """In a worker: task `rank` on a fresh copy of the pipeline (a step may keep state between calls)."""
    executor = copy.copy(_RUNNING)
    executor.pipeline = copy.deepcopy(_RUNNING.pipeline)
    executor._run_for_rank(rank, local_rank=rank % max(1, executor.workers))


class WatchedLocalExecutor(LocalPipelineExecutor):
    """A LocalPipelineExecutor whose `run()` fails fast when a worker dies (see the module docstring)."""

    def run(self) -> None:
        global _RUNNING
        ranks = self.get_incomplete_ranks(
            range(self.local_rank_offset, self.local_rank_offset + self.local_tasks)
        )
        if not ranks:
            return
        self.save_executor_as_json()
        if self.workers == 1:  # in this process, as datatrove does (a pool of one would only add a process)
            for rank in ranks:
                runner = copy.copy(self)
                runner.pipeline = copy.deepcopy(self.pipeline)
                runner._run_for_rank(rank)
            return
        _RUNNING = self
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(ranks)),
            mp_context=multiprocessing.get_context("fork"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
        try:
            futures = {pool.submit(_run_task, rank): rank for rank in ranks}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    unfinished = sorted(r for f, r in futures.items() if not f.done() or f.exception())
                    raise WorkerDied(
                        f"a worker process died (killed, out of memory or crashed) while tasks {unfinished[:8]} "
                        "were running or waiting; the other workers were stopped"
                    ) from None
                if error is not None:
                    raise error
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _RUNNING = None

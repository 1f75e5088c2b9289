"""A dead worker fails its data step within seconds (datatrove's Pool waited for ever), and the rerun resumes; no
worker outlives a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pretrain.config import load_recipe
from pretrain.core.errors import DataError
from pretrain.data.executor import TaskStep, run_steps
from pretrain.data.local_pool import DEAD_WORKER_BOUND_S, WatchedLocalExecutor, WorkerDied
from pretrain.testing import child_pids, is_running, wait_until_gone

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG: Linux"
)


def _step(tmp_path: Path, die_on: int | None) -> TaskStep:
    def run(rank: int, world: int) -> None:
        if rank == die_on:
            os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 from outside, or the OOM killer
        time.sleep(0.2)
        (tmp_path / f"done-{rank}").write_text(str(os.getpid()))

    return TaskStep("pass", 4, run, lambda rank: (tmp_path / f"done-{rank}").exists())


def test_a_killed_worker_fails_the_pool_within_the_bound(tmp_path):
    executor = WatchedLocalExecutor(
        pipeline=[_step(tmp_path, die_on=2)],
        tasks=4,
        workers=2,
        logging_dir=str(tmp_path / "logs"),
        skip_completed=False,
    )
    start = time.monotonic()
    with pytest.raises(WorkerDied, match=r"a worker process died .* while tasks \[.*2.*\] were running"):
        executor.run()
    assert time.monotonic() - start < DEAD_WORKER_BOUND_S + 20  # + the time a loaded CI machine takes to fork


def test_the_step_fails_with_one_line_and_the_rerun_runs_only_what_is_left(tmp_path, tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path, overrides=["data.workers=2"], output_dir=str(tmp_path / "out"))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DataError) as info:
        run_steps(recipe, work, "curate", [_step(work, die_on=2)])
    message = str(info.value)
    assert "\n" not in message and "curate: pass tasks [" in message and "a worker process died" in message
    assert "run again to resume" in message
    finished = {p.name: p.read_text() for p in work.glob("done-*")}
    assert "done-2" not in finished
    run_steps(recipe, work, "curate", [_step(work, die_on=None)])
    assert sorted(p.name for p in work.glob("done-*")) == ["done-0", "done-1", "done-2", "done-3"]
    assert all((work / name).read_text() == pid for name, pid in finished.items())  # kept, not run again


PARENT = textwrap.dedent(
    """
    import os, sys, time
    from pretrain.data.local_pool import WatchedLocalExecutor

    def task(data, rank, world):
        open(os.path.join(sys.argv[1], f"worker-{rank}"), "w").write(str(os.getpid()))
        time.sleep(120)

    WatchedLocalExecutor(pipeline=[task], tasks=2, workers=2, logging_dir=sys.argv[1] + "/logs",
                         skip_completed=False).run()
    """
)


def test_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of the main process used to leave its workers running (266-333 MB each)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.read_text()) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2 and set(child_pids(parent.pid)) >= set(workers)
        parent.kill()
        parent.wait()
        assert wait_until_gone(workers, 30) == []
    finally:
        parent.kill()
        for pid in workers:  # what a failure of this test would leave running
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)

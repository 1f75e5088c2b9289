"""One command per output directory: a second is refused with one line naming the first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from pretrain.commands.run import run_stage
from pretrain.config import load_recipe
from pretrain.core.layout import RunLayout
from pretrain.core.lock import LockedError, RunLock
from pretrain.testing import is_running


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_command(tmp_path):
    first = RunLock(tmp_path / ".lock")
    with first.held("pretrain curate"):
        with pytest.raises(
            LockedError, match=rf"another run \(pid {os.getpid()}, `pretrain curate`\) is using"
        ):
            RunLock(tmp_path / ".lock").acquire("pretrain pack")
    with RunLock(tmp_path / ".lock").held("pretrain pack"):  # released: free again
        pass


FORKED_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pretrain.core.lock import RunLock
    held = RunLock(sys.argv[1])
    held.acquire("pretrain curate")
    if os.fork() == 0:  # a child holds the same descriptor, and outlives its parent
        time.sleep(120)
        os._exit(0)
    os._exit(0)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/*/fd: Linux")
def test_a_lock_whose_recorded_holder_has_ended_names_the_processes_still_holding_it(tmp_path):
    lock = tmp_path / ".lock"
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }  # the child keeps no pipe of ours open
    subprocess.run([sys.executable, "-c", FORKED_HOLDER, str(lock)], check=True, timeout=60, **quiet)
    holders: list[int] = []
    try:
        with pytest.raises(LockedError) as info:
            RunLock(lock).acquire()
        holders = [int(p) for p in str(info.value).split("but processes ")[1].split(" still")[0].split(", ")]
        assert "has ended, but processes" in str(info.value) and f"kill {holders[0]}" in str(info.value)
    finally:
        for pid in holders:
            os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while any(is_running(p) for p in holders) and time.monotonic() < deadline:
        time.sleep(0.05)
    RunLock(lock).acquire()


def test_two_curates_on_one_folder_at_once(tiny_recipe_path, tmp_path):
    """Both used to run and the slower ended in a FileNotFoundError; now the second is refused at once."""
    out = tmp_path / "run"
    overrides = [
        "data.mixture.target_bytes=200000",
        "data.workers=1",
        "data.dedup.near=false",
        "data.decontaminate.enabled=false",
    ]
    args = [a for o in overrides for a in ("--set", o)]
    first = subprocess.Popen(
        [sys.executable, "-m", "pretrain", "curate", str(tiny_recipe_path), "--output-dir", str(out), *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = RunLayout(out).lock
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith(str(first.pid))) and time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.02)
    recipe = load_recipe(tiny_recipe_path, overrides=overrides, output_dir=str(out))
    with pytest.raises(LockedError, match=rf"another run \(pid {first.pid}, `pretrain curate`\)"):
        run_stage(recipe, "curate")
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert (out / "mix" / "STAGE.json").exists()

"""A job restarted by torchrun's elastic agent rendezvouses on the agent's TCPStore, which still holds the failed
attempt's keys. Here the test plays the agent: it hosts the store, runs attempt 0 (two gloo ranks, torch's own
env:// rendezvous), and then attempt 1 with rank 1 starting late, as restarted workers do. Through
`init_process_group` attempt 1 connects; through torch's keys alone rank 0 would read rank 1's dead address."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from pretrain.core.dist import attempt_store_prefix, init_process_group

TIMEOUT = timedelta(seconds=8)


def test_attempt_prefix_only_where_torch_keys_are_stale():
    restarted = {"TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert attempt_store_prefix(restarted) == "pretrain/attempt-2"
    assert attempt_store_prefix({**restarted, "GROUP_WORLD_SIZE": "1"}) == "pretrain/attempt-2"
    assert attempt_store_prefix({**restarted, "TORCHELASTIC_RESTART_COUNT": "0"}) is None  # first attempt
    assert attempt_store_prefix({**restarted, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None  # own store
    assert attempt_store_prefix({**restarted, "GROUP_WORLD_SIZE": "2"}) is None  # agents' counts may differ
    assert attempt_store_prefix({}) is None


def _worker(rank: int, port: int, attempt: int, delay: float, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        GROUP_WORLD_SIZE="1",
        TORCHELASTIC_RESTART_COUNT=str(attempt),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    time.sleep(delay)
    try:
        init_process_group(TIMEOUT)
        if not dist.is_initialized():  # attempt 0: torch's own rendezvous on the agent's store
            dist.init_process_group("gloo", init_method="env://", timeout=TIMEOUT)
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        results.put((attempt, rank, float(total)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((attempt, rank, f"{type(exc).__name__}: {str(exc)[:200]}"))
    results.close()
    results.join_thread()
    os._exit(0)  # no clean-up of the group, as a killed worker leaves it


def _attempt(ctx, port: int, attempt: int, delays: tuple[float, float], results) -> list:
    procs = [ctx.Process(target=_worker, args=(r, port, attempt, delays[r], results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return sorted(results.get(timeout=5) for _ in procs)


@pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")
def test_a_restarted_attempt_does_not_read_the_dead_attempts_addresses():
    agent_store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=TIMEOUT)  # the agent's, kept
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    first = _attempt(ctx, agent_store.port, 0, (0.0, 0.0), results)
    assert first == [(0, 0, 3.0), (0, 1, 3.0)]
    restarted = _attempt(ctx, agent_store.port, 1, (0.0, 2.0), results)  # rank 1 comes back late
    assert restarted == [(1, 0, 3.0), (1, 1, 3.0)], restarted


def test_the_cli_destroys_the_process_group_before_exit(tiny_recipe_path, tmp_path, monkeypatch):
    """Left to interpreter shutdown, a gloo group can abort a rank that finished (pytorch#179291): every
    command ends with the group destroyed, on success and on error."""
    import torch.distributed as dist

    from pretrain import cli
    from pretrain.cli.verbs import VERBS
    from pretrain.core.errors import RecipeError

    def command_with_a_group(name):
        def command(args, argv):
            store = dist.FileStore(str(tmp_path / f"store-{name}"), 1)
            dist.init_process_group("gloo", store=store, rank=0, world_size=1)
            assert dist.is_initialized()
            if name == "pack":
                raise RecipeError(["a recipe error"])
            return 0

        return command

    for name in ("validate", "pack"):
        monkeypatch.setitem(VERBS, name, command_with_a_group(name))  # a stage's verb too: VERBS comes first
    assert cli.main(["validate", str(tiny_recipe_path)]) == 0
    assert not dist.is_initialized()
    assert cli.main(["pack", str(tiny_recipe_path)]) == 1
    assert not dist.is_initialized()


@pytest.mark.parametrize("launched", [True, False], ids=["launched-rank", "plain-process"])
def test_a_launched_rank_ends_without_interpreter_shutdown(launched, tiny_recipe_path, tmp_path):
    """`python -m pretrain` in a rank a launcher started ends with os._exit once the command returned, so
    nothing of the process group's backend is left to die in interpreter shutdown (SIGABRT after a finished
    run); its output is flushed and its exit code kept. A plain process exits normally (atexit runs)."""
    import subprocess
    import sys

    script = (
        "import atexit, runpy, sys; atexit.register(print, 'ATEXIT RAN'); "
        f"sys.argv = ['pretrain', 'validate', {str(tiny_recipe_path)!r}, {str(tmp_path / 'missing.yaml')!r}]; "
        "runpy.run_module('pretrain', run_name='__main__')"
    )
    from pretrain.core.launcher import LAUNCHER_VARIABLES, RELAUNCHED

    env = {k: v for k, v in os.environ.items() if k not in (*LAUNCHER_VARIABLES, RELAUNCHED)}
    if launched:
        env["LOCAL_RANK"] = "0"  # as torchrun sets it in every worker
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 1  # the missing recipe's error code, either way
    assert "ok: " in proc.stdout and "missing.yaml" in proc.stderr  # flushed before the exit
    assert ("ATEXIT RAN" in proc.stdout) is not launched

"""Process-group helpers shared by the data stages and the training loop.

On a machine without CUDA, `accelerate launch --multi_gpu --num_processes N` starts N processes but
accelerate then treats each as a lone process unless told to use the CPU; passing `cpu=True` gives a real
gloo process group (MULTI_CPU), which is what 2-rank CPU runs and tests need.

After a restart by torchrun's elastic agent (`--max_restarts`), the workers rendezvous through the agent's
TCPStore, which outlives the failed attempt with its keys: without care, a new worker reads the dead attempt's
addresses, and the group fails to connect (gloo: "connectFullMesh failed ... Connection refused") or hangs,
costing a further restart (pytorch/pytorch#135712). `init_process_group` keys each restarted attempt apart.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from pretrain.core.progress import get_logger

log = get_logger("pretrain.dist")
T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def force_cpu() -> bool:
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


def partial_state():
    from accelerate import PartialState

    init_process_group()
    return PartialState(cpu=force_cpu())


def is_main_process() -> bool:
    """Rank 0 of a launched group, or a lone process."""
    return world_size() == 1 or partial_state().is_main_process


def wait_for_all_ranks() -> None:
    """A barrier of the launched group (nothing for a lone process)."""
    if world_size() > 1:
        partial_state().wait_for_everyone()


def on_main_process(work: Callable[[], T]) -> T | None:
    """Run `work` on the main process while the other ranks wait at a barrier (a lone process just runs it).

    Returns what `work` returned on the main process, None on the others. For what must happen once per run
    folder (data stages, linking, tidying): every rank then finds it done."""
    if world_size() == 1:
        return work()
    state = partial_state()
    result = work() if state.is_main_process else None
    state.wait_for_everyone()
    return result


def attempt_store_prefix(environ: dict[str, str] | None = None) -> str | None:
    """The store prefix that keeps a restarted attempt's rendezvous keys apart from the failed attempt's,
    or None where torch's own keys are safe: no restart yet, no shared agent store, or more than one agent
    (their restart counts can differ, so only torch's rendezvous can tell the attempts apart)."""
    env = os.environ if environ is None else environ
    restarts = int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    shared = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    one_agent = env.get("GROUP_WORLD_SIZE", "1") == "1"
    if restarts and shared and one_agent:
        return f"pretrain/attempt-{restarts}"
    return None


def init_process_group(timeout: timedelta | None = None) -> None:
    """Start the default process group before accelerate does (it keeps an existing one), with the agent's
    store under a prefix of this attempt when torchrun restarted the job (see the module docstring)."""
    import torch
    import torch.distributed as dist

    prefix = attempt_store_prefix()
    if prefix is None or world_size() < 2 or dist.is_initialized():
        return
    env = os.environ
    store = dist.TCPStore(
        env["MASTER_ADDR"],
        int(env["MASTER_PORT"]),
        world_size(),
        is_master=False,
        timeout=timeout or timedelta(minutes=10),
    )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    log.debug("restarted attempt: process group keys under %s", prefix)
    kwargs = {"timeout": timeout} if timeout else {}
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(prefix, store),
        rank=int(env["RANK"]),
        world_size=world_size(),
        **kwargs,
    )


def release_process_group() -> None:
    """Destroy the default process group, if this process has one, while the interpreter is still whole.

    Left to interpreter shutdown, gloo's worker threads can still hold tensors whose release needs the GIL,
    and the process dies with SIGABRT ("terminate called without an active exception") after a run that
    finished: torchrun then reports the rank as failed and stops its peers (pytorch/pytorch#179291)."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group (and no torch import to pay for)
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_launched_rank(code: int) -> None:
    """End a rank that a launcher started (`core.launcher.under_launcher`), whose command has returned `code`, without
    interpreter shutdown.

    `release_process_group` destroys the group, but the gloo (or NCCL) backend lives on while anything still
    references it (DDP's reducer, the model), and then dies in interpreter shutdown, where a C++ thread that
    needs the GIL is ended by CPython mid-unwind: "terminate called without an active exception", SIGABRT,
    and torchrun reports a finished run as failed (rare: twice in this project's test suite, each time after
    the rank had written final/; 0 of 25 launches on their own). A rank has nothing left to do once the command
    returned: its outputs are written and closed, the trackers finished, the Hub pusher joined. So it flushes
    what is buffered and ends with os._exit, which runs no destructors. Only for a normal return: an exception
    still propagates to the launcher's error handling."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream has nothing left to lose
            pass
    os._exit(code)

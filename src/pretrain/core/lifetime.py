"""No process outlives the command that started it.

    die_with_parent()                 # in a child: the kernel kills it when its parent dies (even by kill -9)

A child process keeps running when its parent dies: datatrove's pool workers kept curating after `pretrain curate`
was killed (266-333 MB each), and the training ranks that torchrun's elastic agent starts in sessions of their own
(`start_new_session=True`) kept training to the end after `accelerate launch`'s process group was killed, holding
the run lock against the resume. On Linux a child asks the kernel for a signal when its parent dies
(`prctl(PR_SET_PDEATHSIG)`); SIGKILL, because a process whose parent is gone has nobody to report to and must not
hang in a collective. Elsewhere nothing is done (the call returns False).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_PID = (
    "PRETRAIN_PARENT_PID"  # set by a parent that relaunches itself: its children check it is still there
)


def die_with_parent(expected_parent: int | None = None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies; True when armed (Linux).

    The signal comes when the parent *thread* that started this process ends, so the parent must start its
    children from a thread that lives as long as it does (its main thread). A parent that died before the
    call (this process already re-parented) cannot signal any more: with `expected_parent` (the pid the parent
    had), this process then ends at once."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # the parent is already gone: nothing would ever stop this process
    return True


def take_expected_parent(environ: dict[str, str] | None = None) -> int | None:
    """The pid a relaunching parent recorded for its children (`PARENT_PID`), or None. The variable is removed:
    it speaks of this process's parent, not of the parent of a process this one starts."""
    value = (os.environ if environ is None else environ).pop(PARENT_PID, "")
    return int(value) if value.isdigit() else None

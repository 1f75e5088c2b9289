"""Restarting a launched job after a crash, and only after a crash.

`pretrain run|train` relaunches itself under `accelerate launch` (commands/launch.py). When a process of the
job dies — a lost node, a segfault, an NCCL error — the job is started again (at most `train.max_restarts`
times) and resumes from its last complete checkpoint. torchrun's own `--max_restarts` cannot tell such a crash
from an error of the input (a missing file, a bad recipe value, a dataset the Hub does not have), which fails
the same way on every attempt: it retried those three times, every rank printing its traceback each time.

So the parent process supervises instead. Each attempt is a fresh `accelerate launch` (no torchrun restarts),
told its attempt number (`RESTARTS`, read by `core.launcher.launcher_restarts`) and where to report an error of
the input (`FAILURE_REPORT`: a folder; the command line writes the error's message there, one file per rank,
`report_failure`). After a failed attempt, a report means the input is at fault: no restart, the error is
repeated once. A stop by a signal is not restarted either.

Signals: a scheduler's SIGTERM (or SIGHUP) to this process is passed on to the job, which checkpoints and stops;
SIGINT too (a terminal's Ctrl-C reaches the whole process group anyway; the ranks treat the same signal
delivered twice in a row as one, see train/callbacks/preemption.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pretrain.core.launcher import SUPERVISOR_RESTARTS as RESTARTS  # which attempt this is (0 = the first)
from pretrain.core.lifetime import PARENT_PID, die_with_parent

FAILURE_REPORT = "PRETRAIN_FAILURE_REPORT"  # the folder a rank writes its input error into
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def report_failure(message: str, environ: dict[str, str] | None = None) -> None:
    """Record an error of the input for the supervising parent (nothing when there is none)."""
    env = os.environ if environ is None else environ
    folder = env.get(FAILURE_REPORT)
    if not folder:
        return
    rank = env.get("RANK", "0")
    try:
        (Path(folder) / f"rank-{rank}.txt").write_text(message, encoding="utf-8")
    except OSError:  # the parent is gone or its folder too: nothing to tell
        pass


def reported_failure(folder: Path) -> str | None:
    """The first rank's reported error, if any rank reported one."""
    reports = sorted(Path(folder).glob("rank-*.txt"))
    return reports[0].read_text(encoding="utf-8").strip() if reports else None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _start_child() -> None:
    """In the launcher, before it runs: end with this supervisor, and tell the ranks it starts that the
    launcher (this pid) is their parent (`core.lifetime.take_expected_parent`)."""
    os.environ[PARENT_PID] = str(os.getpid())
    die_with_parent()


def supervise(argv: list[str], env: dict[str, str], max_restarts: int) -> int:
    """Run `argv` (with `env` added to this process's environment, which the supervisor then owns) until it
    succeeds, is stopped by a signal, fails on its input, or has been restarted `max_restarts` times; returns
    the exit code to leave with."""
    folder = Path(tempfile.mkdtemp(prefix="pretrain-attempts-"))
    stopped: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, frame) -> None:
        stopped.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    saved_env = dict(os.environ)
    try:
        for attempt in range(max_restarts + 1):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            os.environ.update({**env, FAILURE_REPORT: str(folder), RESTARTS: str(attempt)})
            child[:] = [subprocess.Popen(argv, preexec_fn=_start_child)]  # noqa: PLW1509 - env + a prctl only
            code = child[0].wait()
            if code == 0:
                return 0
            if stopped or code in (128 + signal.SIGINT, 128 + signal.SIGTERM) or code < 0:
                return 128 + (stopped[0] if stopped else signal.SIGTERM) if code < 0 else code
            error = reported_failure(folder)
            if error is not None:
                _say(f"not restarting: the job failed on its input, which a restart cannot change ({error})")
                return code
            if attempt < max_restarts:
                _say(
                    f"a process of the job died (exit {code}); restart {attempt + 1} of at most {max_restarts} "
                    "(train.max_restarts), resuming from the last complete checkpoint"
                )
        _say(f"the job failed {max_restarts + 1} times (exit {code}); giving up (train.max_restarts)")
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(folder, ignore_errors=True)

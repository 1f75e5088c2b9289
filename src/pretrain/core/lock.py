"""One command per output directory: an exclusive `flock` on `<output_dir>/.lock`, held while a stage writes there.

    with RunLock(layout.lock).held("pretrain curate"):
        ...

Training takes it for the whole run, a data stage (curate, tokenizer, pack) while it builds its folder: two
commands writing one run folder would corrupt each other (two `pretrain curate` at once ended in a
FileNotFoundError). A second command is refused with one line naming the first (its pid and command).

The kernel releases the lock when the last descriptor of it closes, so a killed command never blocks its own
rerun, with one exception: processes it forked hold the same descriptor. They end with it (core/lifetime.py);
should one survive anyway, the refusal says that the recorded holder is gone and names the processes that still
hold the file (Linux: /proc/*/fd), so the user knows what to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pretrain.core.errors import PretrainError


class LockedError(PretrainError):
    """The output directory is in use by another command."""


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def processes_holding(path: Path) -> list[int]:
    """Pids with `path` open (Linux /proc; [] elsewhere or where /proc cannot be read)."""
    target = str(Path(path).resolve())
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                holders.append(int(fd_dir.parent.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return sorted(p for p in holders if p != os.getpid())


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def acquire(self, command: str = "pretrain") -> None:
        """Take the lock for `command` (recorded for the refusal another command gets), or raise `LockedError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            recorded = fh.read().strip()
            fh.close()
            raise LockedError(self._refusal(recorded)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {command}")
        fh.flush()
        self._fh = fh

    def _refusal(self, recorded: str) -> str:
        pid_text, _, command = recorded.partition(" ")
        who = f"pid {pid_text}" + (f", `{command}`" if command else "") if pid_text else "pid unknown"
        advice = "wait for it to finish, stop it, or pass a different --output-dir"
        if pid_text.isdigit() and not _pid_running(int(pid_text)):
            others = processes_holding(self.path)
            held_by = f"processes {', '.join(map(str, others))}" if others else "a process it started"
            advice = f"it has ended, but {held_by} still hold the lock: stop them (kill {' '.join(map(str, others)) or 'PID'})"
        return f"{self.path.parent}: another run ({who}) is using this output_dir; {advice}"

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator[None]:
        self.acquire(command)
        try:
            yield
        finally:
            self.release()

"""One run per output directory: an exclusive `flock` on `<output_dir>/.lock`, held while training.

Two runs writing the same checkpoints would corrupt each other. The OS releases the lock when the
process dies (even on kill -9), so a crashed run never blocks its own resume.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pretrain.core.errors import PretrainError


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise PretrainError(
                f"{self.path.parent}: another run (pid {holder}) is using this output_dir; wait for it to finish, "
                "stop it, or pass a different --output-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

"""Background pushes of checkpoints as Hub branches (`hub.push_checkpoints: true`).

`submit` copies the checkpoint's uploadable files to a staging folder (so `keep_last` pruning can't
race the upload) and queues it; one daemon thread pushes in order with bounded retries. Failures are
logged, never raised into the training loop; `close()` waits for the queue (with a timeout).
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pretrain.core.progress import get_logger
from pretrain.hub.push import push_folder, stage_upload

log = get_logger("pretrain.hub")


class CheckpointPusher:
    def __init__(self, recipe, retries: int = 3, backoff_s: float = 5.0):
        self.repo_id, self.private = recipe.hub.repo_id, recipe.hub.private
        self.retries, self.backoff_s = retries, backoff_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="hub-pusher", daemon=True)
        self._thread.start()
        self.failures: list[str] = []

    def submit(self, checkpoint: Path, revision: str) -> None:
        staging = Path(tempfile.mkdtemp(prefix="pretrain-ckpt-push-"))
        try:
            stage_upload(Path(checkpoint), staging)
        except Exception as exc:  # never break training over an upload
            log.error("could not stage %s for upload: %s", checkpoint, exc)
            shutil.rmtree(staging, ignore_errors=True)
            return
        self._queue.put((staging, revision))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            staging, revision = item
            for attempt in range(1, self.retries + 1):
                try:
                    push_folder(staging, self.repo_id, revision=revision, private=self.private)
                    log.info("pushed %s to %s@%s", staging.name, self.repo_id, revision)
                    break
                except Exception as exc:
                    log.warning("push of %s failed (attempt %d/%d): %s", revision, attempt, self.retries, exc)
                    if attempt == self.retries:
                        self.failures.append(revision)
                    else:
                        time.sleep(self.backoff_s * attempt)
            shutil.rmtree(staging, ignore_errors=True)

    def close(self, timeout: float | None = 600) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("checkpoint uploads still running after %ss; they stop with the process", timeout)

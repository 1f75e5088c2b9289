"""Background pushes of checkpoints as Hub branches (`hub.push_checkpoints: true`).

`submit` copies the checkpoint's uploadable files to a staging folder (so `keep_last` pruning can't
race the upload) and queues it; one daemon thread pushes in order. Failures never reach the training
loop: an unreachable Hub (`HubPushError.retryable`) is retried with backoff, then reported in one
`log.error` line naming the checkpoint and the `pretrain push` command that uploads it later; a missing
or rejected token is reported once and turns later uploads off (retrying cannot help). Every Hub request is
bounded in time (hub/session.py), so no push can hold the thread for ever; `close()` waits for the queue at most
`timeout` seconds (the end of training), then names each checkpoint not pushed with the command that pushes it.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pretrain.core.progress import get_logger
from pretrain.hub.push import HubPushError, UploadFilter, push_folder, stage_upload

log = get_logger("pretrain.hub")


class CheckpointPusher:
    """Pushes each submitted checkpoint to `repo_id` as branch `revision`, in a daemon thread; `skip` says what
    of a checkpoint folder stays local (its format's owner knows: `train.checkpoint.upload_filter`)."""

    def __init__(
        self,
        repo_id: str,
        private: bool = True,
        skip: UploadFilter = UploadFilter(),
        retries: int = 3,
        backoff_s: float = 5.0,
    ):
        self.repo_id, self.private, self.skip = repo_id, private, skip
        self.retries, self.backoff_s = retries, backoff_s
        self.failures: list[str] = []  # revisions that were not pushed
        self.disabled_reason: str | None = None  # set after a token error: later uploads are skipped
        self._queue: queue.Queue = queue.Queue()
        self._pending: dict[str, Path] = {}  # revision -> checkpoint: submitted, not yet pushed or given up
        self._thread = threading.Thread(target=self._work, name="hub-pusher", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: Path, revision: str) -> None:
        if self.disabled_reason is not None:
            self.failures.append(revision)
            return
        staging = Path(tempfile.mkdtemp(prefix="pretrain-ckpt-push-"))
        try:
            stage_upload(Path(checkpoint), staging, self.skip)
        except Exception as exc:  # never break training over an upload
            log.error("could not stage %s for upload: %s", checkpoint, exc)
            shutil.rmtree(staging, ignore_errors=True)
            return
        self._pending[revision] = Path(checkpoint)
        self._queue.put((staging, Path(checkpoint), revision))

    def _push_one(self, staging: Path, checkpoint: Path, revision: str) -> None:
        later = (
            f"push it later with `pretrain push {checkpoint} --repo-id {self.repo_id} --revision {revision}`"
        )
        for attempt in range(1, self.retries + 1):
            try:
                push_folder(
                    staging,
                    self.repo_id,
                    revision,
                    self.private,
                    skip=self.skip,
                    source=checkpoint,
                    attempts=1,
                )
                log.info("pushed %s to %s@%s", checkpoint.name, self.repo_id, revision)
                return
            except HubPushError as exc:
                # a token or permission problem: every later push would fail the same way
                if not exc.retryable:
                    self.disabled_reason = exc.reason
                    self.failures.append(revision)
                    log.error(
                        "checkpoint uploads are off for this run (training continues): %s; %s",
                        exc.reason,
                        later,
                    )
                    return
                why = exc.reason
            except Exception as exc:  # a bug or an unforeseen library error must not stop training either
                why = " ".join(f"{type(exc).__name__}: {exc}".split())
            if attempt < self.retries:
                log.info(
                    "push of %s failed (attempt %d/%d), retrying: %s", revision, attempt, self.retries, why
                )
                time.sleep(self.backoff_s * attempt)
        self.failures.append(revision)
        log.error(
            "checkpoint %s not pushed after %d attempts (training continues): %s; %s",
            revision,
            self.retries,
            why,
            later,
        )

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            staging, checkpoint, revision = item
            try:
                if self.disabled_reason is None:
                    self._push_one(staging, checkpoint, revision)
                else:
                    self.failures.append(revision)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                self._pending.pop(revision, None)

    def close(self, timeout: float = 600) -> None:
        """Wait for the queued pushes at most `timeout` seconds; what is left is named, with its command."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            left = dict(self._pending)
            commands = "; ".join(
                f"pretrain push {path} --repo-id {self.repo_id} --revision {rev}"
                for rev, path in left.items()
            )
            log.warning(
                "checkpoint uploads not finished after %gs, left to do (training is done; they stop with the "
                "process): %s",
                timeout,
                commands or "none",
            )
        elif self.failures:
            log.warning(
                "%d checkpoint(s) not pushed to %s: %s",
                len(self.failures),
                self.repo_id,
                ", ".join(self.failures),
            )

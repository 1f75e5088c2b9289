"""Atomic writes: a reader sees the old file or folder, or the whole new one — never a part.

Files go through a temp file + fsync + rename; folders are built in a temporary sibling and renamed
into place (the old one, if any, is moved aside first and deleted after).

A temporary folder is `flock`ed by the process building it for as long as it lives, so that a killed attempt's
folder (as large as the stage's output: the corpus, for the data stages) can be told from a live one: the next
`atomic_dir` for the same folder, or `remove_dead_attempts`, deletes the siblings nobody holds. A live concurrent
attempt's folder is locked and kept. Where a filesystem refuses `flock` nothing is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

TMP_MARK, OLD_MARK = (
    ".tmp-",
    ".old-",
)  # `.<name>.tmp-<pid>-<ns>`: being built; `.<name>.old-*`: being replaced


def _lock_dir(path: Path) -> int | None:
    """An open descriptor of `path` holding an exclusive flock, or None when another process holds one (or the
    filesystem cannot lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_dead_attempts(final: Path) -> list[Path]:
    """Delete the temporary siblings of `final` left by attempts that died (kill -9 skips every clean-up); an
    attempt still running holds its folder locked and keeps it. Returns what was removed."""
    final = Path(final)
    removed = []
    for mark in (TMP_MARK, OLD_MARK):
        for path in final.parent.glob(f".{final.name}{mark}*"):
            if not path.is_dir() or path.is_symlink():
                continue
            fd = _lock_dir(path) if mark == TMP_MARK else None
            if mark == TMP_MARK and fd is None:
                continue  # a live attempt's (or unlockable): keep it
            try:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            finally:
                if fd is not None:
                    os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success replace `final` with it, else delete it. Dead
    attempts' temporary folders for `final` are removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_attempts(final)
    attempt = f"{os.getpid()}-{time.time_ns()}"
    # locked under a name no sweep matches, then renamed (the lock stays with the folder): never seen unlocked
    new = final.parent / f".{final.name}.new-{attempt}"
    new.mkdir()
    held = _lock_dir(new)
    tmp = final.parent / f".{final.name}{TMP_MARK}{attempt}"
    new.rename(tmp)
    try:
        yield tmp
        fsync_tree(tmp)
        if final.exists():
            old = final.parent / f".{final.name}{OLD_MARK}{os.getpid()}-{time.time_ns()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if held is not None:
            os.close(held)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON via a temp file + fsync + rename so readers never see a half-written file."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file + fsync + rename: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_tree(root: Path) -> None:
    """fsync every file below `root` (before the rename that publishes it)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename inside it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

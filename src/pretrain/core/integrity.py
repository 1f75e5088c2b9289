"""Content checks of a published folder: every file's size and SHA-256, recorded once the folder is complete.

    files = seal(folder, marker)            # the writer, last: the marker file holds the manifest
    problems = check_sealed(folder, marker) # a reader, before any use

(a checkpoint's marker path is train/checkpoint.py's, the one home of its names)

A marker that merely exists says a write finished; it cannot say that the files are still what was written.
A disk that filled up after the rename, a copy (`rsync`, `cp -r`) cut short, a file deleted by hand or truncated
by a crash of another tool all leave the marker in place. The manifest makes those visible: a missing file, a
size that differs (truncated), or a digest that differs (changed or corrupt) is a problem, one line each.
Files added after sealing (a model card, local evaluation results) are not checked: they are no part of what was
sealed. Writers that split a folder across processes (sharded checkpoints) hash their own files with
`manifest_of` and seal with the merged manifest (`seal(..., files=merged)`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from pretrain.core.atomic import write_json_atomic

FILES = "files"  # the marker's key holding the manifest: {relative path: {"size": bytes, "sha256": hex}}
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def manifest_of(folder: Path, paths: Iterable[Path] | None = None, exclude: Iterable[Path] = ()) -> dict:
    """{relative path: {"size", "sha256"}} of `paths` (default: every file below `folder`) minus `exclude`."""
    folder = Path(folder)
    skip = {Path(p).resolve() for p in exclude}
    chosen = paths if paths is not None else (p for p in folder.rglob("*") if p.is_file())
    out = {}
    for path in sorted(Path(p) for p in chosen):
        if path.resolve() in skip:
            continue
        out[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return out


def seal(folder: Path, marker: Path, extra: dict | None = None, files: dict | None = None) -> dict:
    """Write `marker` (a JSON file inside `folder`) holding the manifest of every other file of `folder` and
    `extra`; returns the manifest. Call it last, when everything else of the folder is written."""
    manifest = files if files is not None else manifest_of(folder, exclude=[marker])
    write_json_atomic(marker, {**(extra or {}), FILES: manifest})
    return manifest


def read_manifest(marker: Path) -> dict | None:
    """The manifest a marker holds; None when the marker is missing, unreadable or holds none (a folder sealed
    before markers carried one)."""
    try:
        data = json.loads(Path(marker).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    files = data.get(FILES) if isinstance(data, dict) else None
    return files if isinstance(files, dict) else None


def manifest_problems(folder: Path, manifest: dict, hashes: bool = True) -> list[str]:
    """One line per file of `manifest` that is missing, of another size, or (with `hashes`) of other content."""
    folder = Path(folder)
    problems = []
    for rel, want in sorted(manifest.items()):
        path = folder / rel
        try:
            size = os.stat(path).st_size
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if not isinstance(want, dict) or size != want.get("size"):
            expected = want.get("size") if isinstance(want, dict) else "?"
            cut = " (truncated)" if isinstance(expected, int) and size < expected else ""
            problems.append(f"{rel}: {size} bytes, {expected} when written{cut}")
        elif hashes and sha256_of(path) != want.get("sha256"):
            problems.append(f"{rel}: content differs from when it was written (SHA-256 mismatch)")
    return problems


def check_sealed(folder: Path, marker: Path, hashes: bool = True) -> list[str] | None:
    """The problems of a sealed folder ([] when intact); None when `marker` holds no manifest."""
    manifest = read_manifest(marker)
    return None if manifest is None else manifest_problems(folder, manifest, hashes)

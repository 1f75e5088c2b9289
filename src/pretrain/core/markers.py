"""`STAGE.json`: the marker that says a stage folder is complete, and with which inputs it was made.

A stage publishes through a `StageOutput` (built by the stage registry, `pretrain/stages.py`): the
folder is written in a temporary sibling and renamed into place together with its marker, so a crash
never leaves a folder that looks finished. The marker records the stage's fingerprint; a folder whose
marker holds another fingerprint is stale. A stage that publishes a model (`final/`) seals it: its marker also
lists every file with its size and SHA-256 (core/integrity.py), and a folder whose files differ is damaged. `StageOutput` is plain data, so a Slurm job can receive it
pickled and publish the stage on another node.
"""

from __future__ import annotations

import glob
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pretrain.core.atomic import atomic_dir, write_json_atomic
from pretrain.core.integrity import check_sealed, seal

MARKER = "STAGE.json"


@dataclass(frozen=True)
class StageOutput:
    """Where one stage publishes, and the fingerprint its marker will record."""

    stage: str
    folder: Path
    fingerprint: str
    recipe_label: str
    inputs: dict | None = None
    """What the fingerprint hashed (JSON-able), kept in the marker so that a later change can be named."""

    def publish(self, produce: Callable[[Path], dict | None], sealed: bool = False) -> dict:
        """Run `produce(tmp)` into a temporary folder, then rename it into place with its marker.

        Returns the summary (`produce`'s dict plus the seconds it took), also stored in the marker. `sealed`:
        the marker also lists every file's size and SHA-256 (`marker_damage` checks them).
        """
        start = time.monotonic()
        with atomic_dir(self.folder) as tmp:
            summary = dict(produce(tmp) or {})
            summary["seconds"] = round(time.monotonic() - start, 2)
            self.write_marker(tmp, summary, sealed)
        return summary

    def write_marker(self, folder: Path, summary: dict | None = None, sealed: bool = False) -> None:
        marker = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "recipe": self.recipe_label,
            **({"inputs": self.inputs} if self.inputs is not None else {}),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": summary or {},
        }
        if sealed:
            seal(folder, folder / MARKER, marker)
        else:
            write_json_atomic(folder / MARKER, marker)


def read_marker(folder: Path) -> dict | None:
    """The folder's marker, or None when it is missing or unreadable (an incomplete folder)."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def marker_damage(folder: Path, hashes: bool = True) -> list[str]:
    """What differs from when a sealed stage folder was published, one line per file ([] when intact or not
    sealed): a missing file, another size, other content (`hashes=False`: sizes only, a stat per file). Files
    added since (a model card) are not checked."""
    return check_sealed(folder, Path(folder) / MARKER, hashes) or []


def marker_summary(folder: Path) -> dict:
    return (read_marker(folder) or {}).get("summary", {})


def files_signature(patterns: list[str]) -> str:
    """Hash of the paths, sizes and mtimes of the files the patterns (globs, files, folders) name."""
    h = hashlib.sha256()
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) or [pattern]
        for m in matches:
            p = Path(m)
            files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
            for f in files:
                try:
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
                except OSError:
                    h.update(f"{f}:missing".encode())
    return h.hexdigest()

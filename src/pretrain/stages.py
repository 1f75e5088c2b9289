"""Stage bookkeeping: which outputs are current, and atomic writes of stage folders.

Each stage's output folder holds a `STAGE.json` with the fingerprint of everything that produced
it: the recipe sections the stage reads plus the fingerprints of the stages it consumes (and, for
curation, the size/mtime of local source files). `pretrain run` skips a stage whose recorded
fingerprint equals the current one, so a changed recipe re-runs exactly the stages it affects.

Outputs are written into a temporary sibling folder and renamed into place only when complete, so
a crash never leaves a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pretrain.config import LocalSource, Recipe

MARKER = "STAGE.json"

# stage -> (output folder under output_dir, recipe sections it reads, upstream stages)
STAGES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "curate": ("mix", ("seed",), ()),  # + the data section minus what only later stages read (below)
    "tokenizer": ("tokenizer", ("tokenizer",), ("curate",)),
    "pack": ("tokens", ("seed",), ("tokenizer", "curate")),
    "train": ("final", ("model", "train", "eval", "seed"), ("pack",)),
}


def stage_path(recipe: Recipe, stage: str) -> Path:
    return recipe.out / STAGES[stage][0]


def upstream_stages(recipe: Recipe, stage: str) -> tuple[str, ...]:
    """The stages whose outputs `stage` reads (a reused pretrained tokenizer reads no mix)."""
    if stage == "tokenizer" and recipe.tokenizer.pretrained:
        return ()
    return STAGES[stage][2]


def fingerprint(recipe: Recipe, stage: str) -> str:
    sections = STAGES[stage][1]
    h = hashlib.sha256()
    h.update(stage.encode())
    h.update(recipe.section_hash(*sections).encode())
    if stage == "curate":
        # val_fraction is read by `pack`; workers and the executor change speed, not output (tested)
        data = recipe.data.model_dump(mode="json", exclude={"val_fraction", "workers", "executor"})
        h.update(json.dumps(data, sort_keys=True).encode())
        h.update(_curation_inputs_signature(recipe).encode())
    if stage == "tokenizer" and recipe.tokenizer.pretrained:
        h.update(_files_signature([str(recipe.resolve_path(recipe.tokenizer.pretrained) / "*")]).encode())
    if stage == "tokenizer":
        h.update(str(recipe.train.seq_len).encode())  # model_max_length
    if stage == "pack":
        h.update(json.dumps([recipe.data.val_fraction, recipe.data.mixture.shard_docs]).encode())
    for up in upstream_stages(recipe, stage):
        h.update(fingerprint(recipe, up).encode())
    return h.hexdigest()[:16]


def _curation_inputs_signature(recipe: Recipe) -> str:
    patterns = []
    for src in recipe.data.sources:
        if isinstance(src, LocalSource):
            patterns += [str(recipe.resolve_path(p)) for p in src.paths]
    patterns += [str(recipe.resolve_path(t.path)) for t in recipe.eval.local_tasks]
    # decontamination reads the eval task names too
    return _files_signature(patterns) + json.dumps(recipe.eval.tasks)


def _files_signature(patterns: list[str]) -> str:
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


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_current(recipe: Recipe, stage: str) -> bool:
    marker = read_marker(stage_path(recipe, stage))
    return bool(marker) and marker.get("fingerprint") == fingerprint(recipe, stage)


def write_marker(folder: Path, recipe: Recipe, stage: str, summary: dict | None = None) -> None:
    data = {
        "stage": stage,
        "fingerprint": fingerprint(recipe, stage),
        "recipe": recipe.source_label,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": summary or {},
    }
    write_json_atomic(folder / MARKER, data)


def require_current(recipe: Recipe, stage: str, needed_by: str) -> Path:
    """Return the stage's output folder, or raise a StageError telling the user what to run."""
    from pretrain.errors import StageError

    folder = stage_path(recipe, stage)
    marker = read_marker(folder)
    if marker is None:
        raise StageError(
            f"{folder}: missing (run `pretrain {stage} {recipe.source_label}` or `pretrain run` before `{needed_by}`)"
        )
    if marker.get("fingerprint") != fingerprint(recipe, stage):
        raise StageError(
            f"{folder}: stale — the recipe or an upstream stage changed since it was built "
            f"(re-run `pretrain {stage} {recipe.source_label}` or use `pretrain run`)"
        )
    return folder


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success replace `final` with it, else delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{time.time_ns()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def _fsync_tree(root: Path) -> None:
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


def _fsync_dir(path: Path) -> None:
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

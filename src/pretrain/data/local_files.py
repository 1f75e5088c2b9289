"""Local file sources (`type: local`): their units and their documents.

Files are streamed line by line or block by block, so memory stays bounded; `.gz` and `.zst` are decompressed on the
fly. An uncompressed jsonl or line-split text file bigger than `UNIT_BYTES` is read as byte ranges, a parquet
file by row groups, so that each task reads only its share. Broken input raises `DataError` naming the file.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from pretrain.config import LocalSource, Recipe
from pretrain.core.errors import DataError
from pretrain.data.units import READ_ERRORS, UNIT_BYTES, ReadStats, Unit, decode, text_of


def expand_files(recipe: Recipe, src: LocalSource) -> list[Path]:
    """The files a local source names (globs and folders expanded, in path order); refuses what cannot be read."""
    files: list[Path] = []
    for pattern in src.paths:
        resolved = recipe.resolve_path(pattern)
        matches = [Path(m) for m in sorted(glob.glob(str(resolved), recursive=True))] or [resolved]
        for m in matches:
            if m.is_dir():
                files += sorted(p for p in m.rglob("*") if p.is_file() and not p.name.startswith("."))
            elif m.is_file():
                files.append(m)
            elif m.exists():  # opening a FIFO waits for a writer for ever; a device never ends
                raise DataError(
                    f"source {src.name!r}: {m} is not a regular file (a pipe, socket or device); copy the text "
                    "into a file"
                )
            else:
                raise DataError(f"source {src.name!r}: file not found: {m}")
    if not files:
        raise DataError(f"source {src.name!r}: no files match {src.paths}")
    return files


def _where(src: LocalSource, place: object) -> str:
    """A place in a source's files as error lines name it: the source, then the file (and line)."""
    return f"source {src.name!r}: {place}"


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.lower().removesuffix(".gz").removesuffix(".zst")
    for fmt in ("jsonl", "json", "parquet"):
        if name.endswith("." + fmt):
            return fmt
    return "txt"


def _open_binary(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def local_units(recipe: Recipe, src: LocalSource, idx: int) -> list[Unit]:
    units: list[Unit] = []
    for path in expand_files(recipe, src):
        fmt = _format_of(path, src.format)
        size = path.stat().st_size
        if fmt == "parquet":
            groups = _parquet_groups(path, src)
            for g, nbytes in enumerate(groups):
                units.append(Unit(idx, len(units), str(path), g, g + 1, nbytes, whole_file=len(groups) == 1))
            continue
        splittable = (
            fmt == "jsonl" or (fmt == "txt" and src.doc_split == "line")
        ) and not path.name.endswith((".gz", ".zst"))
        if splittable and size > UNIT_BYTES:
            for start in range(0, size, UNIT_BYTES):
                stop = min(start + UNIT_BYTES, size)
                units.append(Unit(idx, len(units), str(path), start, stop, stop - start, whole_file=False))
        else:
            units.append(Unit(idx, len(units), str(path), 0, -1, size))
    return units


def _parquet_groups(path: Path, src: LocalSource) -> list[int]:
    """Compressed bytes of each row group (at least one entry, so an empty file is still a unit)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for corrupt files
        raise DataError(f"source {src.name!r}: {path}: not a readable parquet file ({exc})") from None
    groups = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        groups.append(sum(rg.column(c).total_compressed_size for c in range(rg.num_columns)))
    return groups or [path.stat().st_size]


def iter_local_unit(src: LocalSource, unit: Unit, stats: ReadStats) -> Iterator[tuple[str, str]]:
    path = Path(unit.path)
    if unit.index == 0 or unit.start == 0:
        stats.files.append(str(path))
    stats.input_bytes += unit.size
    fmt = _format_of(path, src.format)
    try:
        if fmt == "parquet":
            yield from _iter_parquet(path, src, unit.start)
        elif not unit.whole_file:
            yield from _iter_lines_range(path, src, stats, fmt, unit.start, unit.stop)
        elif fmt in ("jsonl", "json"):
            yield from _iter_json(path, src, stats, fmt)
        else:
            yield from _iter_text(path, src, stats)
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"source {src.name!r}: cannot read {path}: {type(exc).__name__}: {exc}") from None


def _iter_lines_range(
    path: Path, src: LocalSource, stats: ReadStats, fmt: str, start: int, stop: int
) -> Iterator[tuple[str, str]]:
    """The lines that START in [start, stop) of an uncompressed file (a line crossing `stop` is read whole)."""
    with open(path, "rb") as fh:
        if start:
            fh.seek(start - 1)
            fh.readline()  # the rest of a line that began before `start` belongs to the previous range
        pos = fh.tell()
        while pos < stop:
            raw = fh.readline()
            if not raw:
                break
            where = f"{path}@{pos}"
            pos += len(raw)
            if not raw.strip():
                continue
            if fmt == "jsonl":
                try:
                    rec = json.loads(decode(raw, src.encoding_errors, stats, _where(src, where)))
                except ValueError as exc:
                    raise DataError(f"source {src.name!r}: {where}: invalid JSON line ({exc})") from None
                yield where, text_of(rec, src, where)
            else:
                yield where, decode(raw, src.encoding_errors, stats, _where(src, where)).rstrip("\r\n")


def _iter_text(path: Path, src: LocalSource, stats: ReadStats) -> Iterator[tuple[str, str]]:
    with _open_binary(path) as fh:
        if src.doc_split == "file":
            yield str(path), decode(fh.read(), src.encoding_errors, stats, _where(src, path))
            return
        block: list[str] = []
        for n, raw in enumerate(fh):
            line = decode(raw, src.encoding_errors, stats, _where(src, f"{path}:{n + 1}")).rstrip("\r\n")
            if src.doc_split == "line":
                if line.strip():
                    yield f"{path}:{n + 1}", line
            elif line.strip():
                block.append(line)
            elif block:
                yield f"{path}:{n + 1}", "\n".join(block)
                block = []
        if block:
            yield f"{path}:end", "\n".join(block)


def _iter_json(path: Path, src: LocalSource, stats: ReadStats, fmt: str) -> Iterator[tuple[str, str]]:
    with _open_binary(path) as fh:
        if fmt == "json":
            text = decode(fh.read(), src.encoding_errors, stats, _where(src, path))
            try:
                records = json.loads(text)
            except ValueError as exc:
                raise DataError(f"source {src.name!r}: {path}: invalid JSON ({exc})") from None
            if isinstance(records, dict):
                records = [records]
            for i, rec in enumerate(records):
                yield f"{path}:{i}", text_of(rec, src, f"{path}[{i}]")
            return
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(decode(raw, src.encoding_errors, stats, _where(src, f"{path}:{n}")))
            except ValueError as exc:
                raise DataError(f"source {src.name!r}: {path}:{n}: invalid JSON line ({exc})") from None
            yield f"{path}:{n}", text_of(rec, src, f"{path}:{n}")


def _iter_parquet(path: Path, src: LocalSource, group: int) -> Iterator[tuple[str, str]]:
    """One row group of a parquet file (pyarrow directly: `datasets` streaming of local files is slow)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for corrupt files
        raise DataError(f"source {src.name!r}: {path}: not a readable parquet file ({exc})") from None
    if src.text_field not in pf.schema_arrow.names:
        raise DataError(
            f"source {src.name!r}: {path}: no column {src.text_field!r} (found: {', '.join(pf.schema_arrow.names)}); set text_field"
        )
    if group >= pf.metadata.num_row_groups:
        return
    row = sum(pf.metadata.row_group(g).num_rows for g in range(group))
    for batch in pf.iter_batches(columns=[src.text_field], batch_size=1024, row_groups=[group]):
        for value in batch.column(0).to_pylist():
            row += 1
            if isinstance(value, str):
                yield f"{path}:{row}", value

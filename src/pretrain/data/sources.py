"""Read documents from the three kinds of source: `hub` (datasets), `local` files, `builtin` corpora.

Every reader yields `(doc_id, text)` and fills a `ReadStats` (documents, bytes, undecodable bytes,
files). Local files are streamed line by line or block by block, so memory stays bounded; `.gz` and
`.zst` are decompressed on the fly. Broken input raises `DataError` naming the source and file.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.config import BuiltinSource, HubSource, LocalSource, Recipe
from pretrain.core.errors import DataError
from pretrain.data.builtin import iter_builtin


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or truncated file can raise while being read (gzip, zstd, parquet, decoding)."""
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    try:
        import pyarrow

        errors += (pyarrow.ArrowException,)
    except ImportError:  # pragma: no cover
        pass
    return errors


READ_ERRORS = _read_errors()


@dataclass
class ReadStats:
    docs: int = 0
    bytes: int = 0
    undecodable_bytes: int = 0
    files: list[str] = field(default_factory=list)


def iter_source(recipe: Recipe, src, stats: ReadStats) -> Iterator[tuple[str, str]]:
    """Yield the documents of one source, honouring its budget (docs / bytes)."""
    if isinstance(src, BuiltinSource):
        docs = iter_builtin(src.corpus)
    elif isinstance(src, LocalSource):
        docs = _iter_local(recipe, src, stats)
    elif isinstance(src, HubSource):
        docs = _iter_hub(src)
    else:  # pragma: no cover - the schema admits no other type
        raise DataError(f"source {src.name!r}: unknown type")
    for doc_id, text in docs:
        if src.budget.docs is not None and stats.docs >= src.budget.docs:
            return
        if src.budget.bytes is not None and stats.bytes >= src.budget.bytes:
            return
        stats.docs += 1
        stats.bytes += len(text.encode("utf-8"))
        yield doc_id, text


def _expand(recipe: Recipe, src: LocalSource) -> list[Path]:
    files: list[Path] = []
    for pattern in src.paths:
        resolved = recipe.resolve_path(pattern)
        matches = [Path(m) for m in sorted(glob.glob(str(resolved), recursive=True))] or [resolved]
        for m in matches:
            if m.is_dir():
                files += sorted(p for p in m.rglob("*") if p.is_file() and not p.name.startswith("."))
            elif m.exists():
                files.append(m)
            else:
                raise DataError(f"source {src.name!r}: file not found: {m}")
    if not files:
        raise DataError(f"source {src.name!r}: no files match {src.paths}")
    return files


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


def decode(raw: bytes, errors: str, stats: ReadStats, where: str) -> str:
    """UTF-8 (BOM stripped); on bad bytes fall back to latin-1 or U+FFFD, counting them."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if errors == "error":
            raise DataError(
                f"{where}: not valid UTF-8 at byte {exc.start} (set encoding_errors: latin1 or replace)"
            ) from None
        good = raw.decode("utf-8-sig", errors="replace")
        stats.undecodable_bytes += good.count("\ufffd")
        return good if errors == "replace" else raw.decode("latin-1")


def _iter_local(recipe: Recipe, src: LocalSource, stats: ReadStats) -> Iterator[tuple[str, str]]:
    for path in _expand(recipe, src):
        stats.files.append(str(path))
        fmt = _format_of(path, src.format)
        try:
            if fmt == "parquet":
                yield from _iter_parquet(path, src)
            elif fmt in ("jsonl", "json"):
                yield from _iter_json(path, src, stats, fmt)
            else:
                yield from _iter_text(path, src, stats)
        except DataError:
            raise
        except READ_ERRORS as exc:
            raise DataError(f"source {src.name!r}: cannot read {path}: {type(exc).__name__}: {exc}") from None


def _iter_text(path: Path, src: LocalSource, stats: ReadStats) -> Iterator[tuple[str, str]]:
    with _open_binary(path) as fh:
        if src.doc_split == "file":
            yield str(path), decode(fh.read(), src.encoding_errors, stats, str(path))
            return
        block: list[str] = []
        for n, raw in enumerate(fh):
            line = decode(raw, src.encoding_errors, stats, f"{path}:{n + 1}").rstrip("\r\n")
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


def _text_of(record: object, src, where: str) -> str:
    if not isinstance(record, dict) or src.text_field not in record:
        keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
        raise DataError(
            f"source {src.name!r}: {where}: no text field {src.text_field!r} (found: {keys}); set text_field"
        )
    value = record[src.text_field]
    if not isinstance(value, str):
        raise DataError(
            f"source {src.name!r}: {where}: field {src.text_field!r} is {type(value).__name__}, not text"
        )
    return value


def _iter_json(path: Path, src: LocalSource, stats: ReadStats, fmt: str) -> Iterator[tuple[str, str]]:
    with _open_binary(path) as fh:
        if fmt == "json":
            text = decode(fh.read(), src.encoding_errors, stats, str(path))
            try:
                records = json.loads(text)
            except ValueError as exc:
                raise DataError(f"source {src.name!r}: {path}: invalid JSON ({exc})") from None
            if isinstance(records, dict):
                records = [records]
            for i, rec in enumerate(records):
                yield f"{path}:{i}", _text_of(rec, src, f"{path}[{i}]")
            return
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(decode(raw, src.encoding_errors, stats, f"{path}:{n}"))
            except ValueError as exc:
                raise DataError(f"source {src.name!r}: {path}:{n}: invalid JSON line ({exc})") from None
            yield f"{path}:{n}", _text_of(rec, src, f"{path}:{n}")


def _iter_parquet(path: Path, src: LocalSource) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for corrupt files
        raise DataError(f"source {src.name!r}: {path}: not a readable parquet file ({exc})") from None
    if src.text_field not in pf.schema_arrow.names:
        raise DataError(
            f"source {src.name!r}: {path}: no column {src.text_field!r} (found: {', '.join(pf.schema_arrow.names)}); set text_field"
        )
    row = 0
    for batch in pf.iter_batches(columns=[src.text_field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            row += 1
            if isinstance(value, str):
                yield f"{path}:{row}", value


def _iter_hub(src: HubSource) -> Iterator[tuple[str, str]]:
    """Stream a `datasets` dataset (the Hub, or a packaged builder like `json`/`parquet` with data_files)."""
    import datasets

    kwargs = {"split": src.split, "streaming": src.streaming}
    if src.config_name:
        kwargs["name"] = src.config_name
    if src.data_dir:
        kwargs["data_dir"] = src.data_dir
    if src.data_files:
        kwargs["data_files"] = src.data_files
    if src.revision:
        kwargs["revision"] = src.revision
    try:
        ds = datasets.load_dataset(src.path, **kwargs)
    except Exception as exc:  # datasets raises many types (connection, FileNotFound, DatasetNotFound...)
        raise DataError(
            f"source {src.name!r}: cannot load dataset {src.path!r}: {type(exc).__name__}: {exc}"
        ) from None
    for i, rec in enumerate(ds):
        yield f"{src.path}:{i}", _text_of(rec, src, f"{src.path} row {i}")

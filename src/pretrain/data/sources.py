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
from pretrain.data.builtin import builtin_units, iter_builtin


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
    input_bytes: int = 0
    """Bytes of input the reader covered (file ranges, row groups): read amplification = sum / input size."""


@dataclass(frozen=True)
class Unit:
    """The smallest piece of a source one task reads: a file, a byte range of one, a parquet row group,
    a shard of a `datasets` dataset, or a chunk of a built-in corpus.

    Units depend only on the source (never on the number of tasks), so the global document order —
    (source, unit, row), packed by `doc_key` — and every result that follows it are the same for any
    number of tasks.
    """

    source_idx: int
    index: int
    path: str = ""
    start: int = 0
    """Byte offset (text/jsonl ranges), row group (parquet), shard or row range start (hub), chunk (builtin)."""
    stop: int = -1
    """End of the range (exclusive); -1 = to the end of the file."""
    size: int = 0
    """Input bytes the unit covers (0 when unknown, e.g. a Hub shard before it is read)."""
    whole_file: bool = True


UNIT_BYTES = 64 << 20  # an uncompressed jsonl / line-split txt file bigger than this is read as byte ranges
HUB_UNIT_ROWS = 10_000  # rows per unit of a non-streaming (downloaded) dataset
ROW_BITS, UNIT_BITS = 32, 24


def doc_key(source_idx: int, unit_index: int, row: int) -> int:
    """A document's place in the corpus as one uint64: source (8 bits), unit (24 bits), row in unit (32 bits)."""
    return (source_idx << (ROW_BITS + UNIT_BITS)) | (unit_index << ROW_BITS) | row


def key_source(key: int) -> int:
    return key >> (ROW_BITS + UNIT_BITS)


def plan_units(recipe: Recipe) -> list[list[Unit]]:
    """Every source's units, in order (listing files, parquet footers, or the dataset's shards)."""
    plans = []
    for idx, src in enumerate(recipe.data.sources):
        units = plan_units_of(recipe, src, idx)
        if len(units) >= 1 << UNIT_BITS:
            raise DataError(
                f"source {src.name!r}: {len(units)} input units; at most {1 << UNIT_BITS} are supported"
            )
        plans.append(units)
    return plans


def task_units(plans: list[list[Unit]], world: int, rank: int) -> list[list[Unit]]:
    """Task `rank`'s units of every source: units are dealt round-robin over all sources in order."""
    mine: list[list[Unit]] = [[] for _ in plans]
    n = 0
    for idx, units in enumerate(plans):
        for unit in units:
            if n % world == rank:
                mine[idx].append(unit)
            n += 1
    return mine


def split_budget(total: int | None, units_per_task: list[int], rank: int) -> int | None:
    """Task `rank`'s part of a source budget: proportional to the units it holds (largest remainder)."""
    if total is None:
        return None
    held = sum(units_per_task)
    if held == 0:
        return 0
    parts = [total * u // held for u in units_per_task]
    order = sorted(range(len(parts)), key=lambda r: (-(total * units_per_task[r] % held), r))
    for r in order[: total - sum(parts)]:
        parts[r] += 1
    return parts[rank]


def iter_unit(recipe: Recipe, src, unit: Unit, stats: ReadStats) -> Iterator[tuple[int, str, str]]:
    """Yield `(row, doc_id, text)` for the documents of one unit (no budget: the caller applies its share)."""
    if isinstance(src, BuiltinSource):
        docs = iter_builtin(src.corpus, unit.start)
    elif isinstance(src, LocalSource):
        docs = _iter_local_unit(src, unit, stats)
    elif isinstance(src, HubSource):
        docs = (
            _iter_hub_parquet(src, unit, stats)
            if unit.path.endswith(".parquet")
            else _iter_hub_unit(src, unit)
        )
    else:  # pragma: no cover
        raise DataError(f"source {src.name!r}: unknown type")
    for row, (doc_id, text) in enumerate(docs):
        if row >= 1 << ROW_BITS:
            raise DataError(f"source {src.name!r}: more than {1 << ROW_BITS} documents in {doc_id}")
        stats.docs += 1
        stats.bytes += len(text.encode("utf-8"))
        yield row, doc_id, text


def read_budgeted(
    recipe: Recipe, src, units: list[Unit], stats: ReadStats, max_docs: int | None, max_bytes: int | None
) -> Iterator[tuple[Unit, int, str, str]]:
    """`(unit, row, doc_id, text)` of `units` in order, stopping at `max_docs` documents or once `max_bytes`
    are reached (the document crossing the bound is included)."""
    if max_docs == 0 or max_bytes == 0:
        return
    docs = nbytes = 0
    for unit in units:
        for row, doc_id, text in iter_unit(recipe, src, unit, stats):
            yield unit, row, doc_id, text
            docs += 1
            nbytes += len(text.encode("utf-8"))
            if (max_docs is not None and docs >= max_docs) or (max_bytes is not None and nbytes >= max_bytes):
                return


def iter_source(recipe: Recipe, src, stats: ReadStats) -> Iterator[tuple[str, str]]:
    """Yield the documents of one source in order, honouring its whole budget (one reader, no tasks)."""
    units = plan_units_of(recipe, src, recipe.data.sources.index(src))
    for _, _, doc_id, text in read_budgeted(recipe, src, units, stats, src.budget.docs, src.budget.bytes):
        yield doc_id, text


def plan_units_of(recipe: Recipe, src, idx: int) -> list[Unit]:
    if isinstance(src, BuiltinSource):
        return [Unit(idx, i, start=i) for i in range(builtin_units(src.corpus))]
    if isinstance(src, LocalSource):
        return _local_units(recipe, src, idx)
    return _hub_units(src, idx)


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


def _local_units(recipe: Recipe, src: LocalSource, idx: int) -> list[Unit]:
    units: list[Unit] = []
    for path in _expand(recipe, src):
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


def _iter_local_unit(src: LocalSource, unit: Unit, stats: ReadStats) -> Iterator[tuple[str, str]]:
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
                    rec = json.loads(decode(raw, src.encoding_errors, stats, where))
                except ValueError as exc:
                    raise DataError(f"source {src.name!r}: {where}: invalid JSON line ({exc})") from None
                yield where, _text_of(rec, src, where)
            else:
                yield where, decode(raw, src.encoding_errors, stats, where).rstrip("\r\n")


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


def _load_hub(src: HubSource):
    """`datasets.load_dataset` for a hub source (streaming: an IterableDataset sharded by data file)."""
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
        return datasets.load_dataset(src.path, **kwargs)
    except Exception as exc:  # datasets raises many types (connection, FileNotFound, DatasetNotFound...)
        raise DataError(
            f"source {src.name!r}: cannot load dataset {src.path!r}: {type(exc).__name__}: {exc}"
        ) from None


def _hub_units(src: HubSource, idx: int) -> list[Unit]:
    """The units of a hub source.

    Streaming a dataset whose split is parquet files (every Hub dataset has them, as uploaded or converted):
    one unit per data file, resolved by `datasets` from the repo listing alone (no data is read), and read
    by the task that owns it with one download — so the Hub serves each file once whatever the number of
    tasks. Other streaming datasets: one unit per shard of the `datasets` IterableDataset. Downloaded
    (streaming: false): one unit per HUB_UNIT_ROWS rows.
    """
    if src.streaming:
        files = _hub_parquet_files(src)
        if files:
            return [Unit(idx, i, url, whole_file=True) for i, url in enumerate(files)]
        ds = _load_hub(src)
        return [Unit(idx, i, src.path, i, i + 1) for i in range(ds.num_shards)]
    ds = _load_hub(src)
    rows = len(ds)
    starts = range(0, rows, HUB_UNIT_ROWS)
    return [Unit(idx, i, src.path, a, min(a + HUB_UNIT_ROWS, rows)) for i, a in enumerate(starts)] or [
        Unit(idx, 0, src.path, 0, 0)
    ]


def _hub_parquet_files(src: HubSource) -> list[str] | None:
    """The split's data files when they are all parquet (fsspec URLs, e.g. hf://datasets/org/ds@sha/...)."""
    import datasets

    kwargs = {}
    for key, value in (
        ("name", src.config_name),
        ("data_dir", src.data_dir),
        ("data_files", src.data_files),
        ("revision", src.revision),
    ):
        if value:
            kwargs[key] = value
    try:
        builder = datasets.load_dataset_builder(src.path, **kwargs)
    except Exception as exc:  # datasets raises many types (connection, FileNotFound, DatasetNotFound...)
        raise DataError(
            f"source {src.name!r}: cannot load dataset {src.path!r}: {type(exc).__name__}: {exc}"
        ) from None
    data_files = getattr(builder.config, "data_files", None) or {}
    if src.split not in data_files:
        return None
    files = [str(f) for f in data_files[src.split]]
    return files if files and all(f.endswith(".parquet") for f in files) else None


def _iter_hub_parquet(src: HubSource, unit: Unit, stats: ReadStats) -> Iterator[tuple[str, str]]:
    """Download one parquet data file (one GET: the Hub serves it once) to a temporary file and read it."""
    import tempfile

    import fsspec
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(unit.path)
    with tempfile.TemporaryDirectory(prefix="pretrain-hub-") as tmp:
        local = Path(tmp) / "shard.parquet"
        try:
            fs.get_file(path, str(local))
        except Exception as exc:  # network errors of fsspec / huggingface_hub
            raise DataError(
                f"source {src.name!r}: downloading {unit.path} failed: {type(exc).__name__}: {exc}"
            ) from None
        stats.input_bytes += local.stat().st_size
        stats.files.append(unit.path)
        pf = pq.ParquetFile(local)
        if src.text_field not in pf.schema_arrow.names:
            raise DataError(
                f"source {src.name!r}: {unit.path}: no column {src.text_field!r} "
                f"(found: {', '.join(pf.schema_arrow.names)}); set text_field"
            )
        row = 0
        for batch in pf.iter_batches(columns=[src.text_field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                row += 1
                if isinstance(value, str):
                    yield f"{src.path}:{unit.index}:{row}", value


def _iter_hub_unit(src: HubSource, unit: Unit) -> Iterator[tuple[str, str]]:
    """Stream one shard of the dataset (only its data file is downloaded), or a row range of a downloaded one."""
    ds = _load_hub(src)
    if src.streaming:
        part = ds.shard(num_shards=ds.num_shards, index=unit.start, contiguous=True)
        label = f"{src.path}:{unit.start}"
    else:
        part = ds.select(range(unit.start, unit.stop))
        label = src.path
    first = 0 if src.streaming else unit.start
    try:
        for i, rec in enumerate(part, first):
            yield f"{label}:{i}", _text_of(rec, src, f"{label} row {i}")
    except DataError:
        raise
    except Exception as exc:  # network and decoding errors while streaming
        raise DataError(
            f"source {src.name!r}: reading {src.path!r} shard {unit.start} failed: {type(exc).__name__}: {exc}"
        ) from None

"""Hub dataset sources (`type: hub`): their units (parquet files or row ranges) and their documents.

A source whose dataset has parquet files is read file by file (a unit per file, streamed with `datasets` from the
Hub API); otherwise the split is downloaded once and cut into units of `HUB_UNIT_ROWS` rows. Each task reads
only its units (data/sources.py plans them). Every Hub request is bounded in time (hub/session.py,
`PRETRAIN_HUB_TIMEOUT_S`); huggingface_hub and `datasets` retry them a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pretrain.config import HubSource
from pretrain.core.errors import DataError
from pretrain.data.units import HUB_UNIT_ROWS, ReadStats, Unit, text_of
from pretrain.hub.session import bound_hub_requests, failure_reason


def _cannot_load(src: HubSource, exc: Exception) -> DataError:
    network = failure_reason(exc)
    if network is not None:
        from huggingface_hub import constants

        return DataError(
            f"source {src.name!r}: cannot load dataset {src.path!r}: cannot reach the Hub at {constants.ENDPOINT} "
            f"({network}); check your network, proxy and HF_ENDPOINT, then run again"
        )
    return DataError(f"source {src.name!r}: cannot load dataset {src.path!r}: {type(exc).__name__}: {exc}")


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
    bound_hub_requests()
    try:
        return datasets.load_dataset(src.path, **kwargs)
    except Exception as exc:  # datasets raises many types (connection, FileNotFound, DatasetNotFound...)
        raise _cannot_load(src, exc) from None


def hub_units(src: HubSource, idx: int) -> list[Unit]:
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
    bound_hub_requests()
    try:
        builder = datasets.load_dataset_builder(src.path, **kwargs)
    except Exception as exc:  # datasets raises many types (connection, FileNotFound, DatasetNotFound...)
        raise _cannot_load(src, exc) from None
    data_files = getattr(builder.config, "data_files", None) or {}
    if src.split not in data_files:
        return None
    files = [str(f) for f in data_files[src.split]]
    return files if files and all(f.endswith(".parquet") for f in files) else None


def iter_hub_parquet(src: HubSource, unit: Unit, stats: ReadStats) -> Iterator[tuple[str, str]]:
    """Download one parquet data file (one GET: the Hub serves it once) to a temporary file and read it."""
    import tempfile

    import fsspec
    import pyarrow.parquet as pq

    bound_hub_requests()
    fs, path = fsspec.core.url_to_fs(unit.path)
    with tempfile.TemporaryDirectory(prefix="pretrain-hub-") as tmp:
        local = Path(tmp) / "shard.parquet"
        try:
            fs.get_file(path, str(local))
        except Exception as exc:  # network errors of fsspec / huggingface_hub
            why = failure_reason(exc) or f"{type(exc).__name__}: {exc}"
            raise DataError(
                f"source {src.name!r}: downloading {unit.path} failed ({why}); run again to resume (finished "
                "tasks are kept)"
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


def iter_hub_unit(src: HubSource, unit: Unit) -> Iterator[tuple[str, str]]:
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
            yield f"{label}:{i}", text_of(rec, src, f"{label} row {i}")
    except DataError:
        raise
    except Exception as exc:  # network and decoding errors while streaming
        raise DataError(
            f"source {src.name!r}: reading {src.path!r} shard {unit.start} failed: {type(exc).__name__}: {exc}"
        ) from None

"""What the data stages read in: units of work and the reading primitives every source kind shares.

A source is read in units (a file, a byte range of a big file, a parquet row group, a Hub parquet file or row
range) so that each task reads only its share (data/sources.py plans them); every document is keyed by
(source, unit, row) and its text decoded here the same way for local files (data/local_files.py) and Hub
datasets (data/hub_sources.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pretrain.core.errors import DataError

ROW_BITS, UNIT_BITS = 32, 24  # a document key: source (8 bits), unit (24 bits), row in unit (32 bits)


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


def doc_key(source_idx: int, unit_index: int, row: int) -> int:
    """A document's place in the corpus as one uint64: source (8 bits), unit (24 bits), row in unit (32 bits)."""
    return (source_idx << (ROW_BITS + UNIT_BITS)) | (unit_index << ROW_BITS) | row


def key_source(key: int) -> int:
    return key >> (ROW_BITS + UNIT_BITS)


# A piece of at least BINARY_MIN_BYTES whose bytes are more than BINARY_BAD_FRACTION invalid UTF-8 is binary (a NUL-free
# one was trained on as latin-1 text: 28% of a 30 kB file); Western text in latin-1 has a few percent
BINARY_MIN_BYTES, BINARY_BAD_FRACTION = 256, 0.2


def decode(raw: bytes, errors: str, stats: ReadStats, where: str) -> str:
    """UTF-8 (BOM stripped); on bad bytes fall back to latin-1 or U+FFFD, counting them. A NUL byte, or a piece
    mostly of invalid UTF-8, is no text in any of these (a binary file given as `txt` was decoded as latin-1 and
    trained on): one error."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{where}: holds NUL bytes (the first at byte {nul}): binary data, not text; remove the file from the "
            "source's paths"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if errors == "error":
            raise DataError(
                f"{where}: not valid UTF-8 at byte {exc.start} (set encoding_errors: latin1 or replace)"
            ) from None
        good = raw.decode("utf-8-sig", errors="replace")
        bad = good.count("\ufffd")
        if len(raw) >= BINARY_MIN_BYTES and bad > BINARY_BAD_FRACTION * len(raw):
            raise DataError(
                f"{where}: {bad:,} of its {len(raw):,} bytes are not UTF-8: binary data, not text (latin-1 text has "
                "a few percent); remove the file from the source's paths, or convert it to UTF-8"
            ) from None
        stats.undecodable_bytes += bad
        return good if errors == "replace" else raw.decode("latin-1")


def text_of(record: object, src, where: str) -> str:
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

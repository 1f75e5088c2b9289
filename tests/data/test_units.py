"""Decoding source bytes: UTF-8, a stated fallback for bad bytes, and binary data refused."""

from __future__ import annotations

import pytest

from pretrain.core.errors import DataError
from pretrain.data.units import ReadStats, decode


def test_binary_data_is_refused_whatever_the_fallback():
    """A binary file given as `txt` was decoded as latin-1 and trained on."""
    for errors in ("latin1", "replace", "error"):
        with pytest.raises(
            DataError, match=r"bin.txt:1: holds NUL bytes \(the first at byte 4\): binary data"
        ):
            decode(b"\x7fELF\x00\x01\x02", errors, ReadStats(), "bin.txt:1")


def test_bad_bytes_follow_the_stated_fallback():
    assert decode("café".encode("latin-1"), "latin1", ReadStats(), "f") == "café"
    stats = ReadStats()
    assert decode(b"caf\xe9", "replace", stats, "f") == "caf\ufffd" and stats.undecodable_bytes == 1
    with pytest.raises(DataError, match="not valid UTF-8 at byte 3"):
        decode(b"caf\xe9", "error", stats, "f")
    assert decode("\ufeffplain".encode(), "error", stats, "f") == "plain"


def test_nul_free_binary_data_is_refused_and_latin1_prose_is_kept():
    """A NUL-free binary file (28% invalid UTF-8) was decoded as latin-1 and trained on (#33 probe)."""
    import random

    rng = random.Random(0)
    binary = bytes(rng.choice(range(1, 256)) for _ in range(4096))
    for errors in ("latin1", "replace"):
        with pytest.raises(
            DataError, match=r"blob.txt: [\d,]+ of its 4,096 bytes are not UTF-8: binary data"
        ):
            decode(binary, errors, ReadStats(), "blob.txt")
    prose = ("Déjà vu à la café, naïve façade. " * 40).encode("latin-1")  # ~9% non-ASCII: text
    assert decode(prose, "latin1", ReadStats(), "f").startswith("Déjà vu")

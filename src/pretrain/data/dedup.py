"""Exact and near-duplicate detection (MinHash + LSH banding), computed per document in workers.

Why our own MinHash rather than datatrove's: datatrove's MinHash is a 4-stage pipeline that writes
signatures, buckets and clusters to disk between stages — right for terabytes across a cluster,
but for the single-node mixes this stage targets the whole thing fits in memory as one pass of
band keys (bands x 8 bytes per document), and one pass keeps the stage simple and resumable as a
unit. Exact dedup hashes the text lower-cased with whitespace collapsed.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash

_WORD = re.compile(r"\w+", re.UNICODE)
_PRIME = np.uint64((1 << 61) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)


def exact_key(text: str) -> bytes:
    return xxhash.xxh3_128(" ".join(text.lower().split()).encode("utf-8")).digest()


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class MinHasher:
    """Signatures of word n-gram shingles; `band_keys` gives one hashable key per LSH band."""

    def __init__(self, ngram: int, bands: int, rows: int, seed: int):
        self.ngram, self.bands, self.rows = ngram, bands, rows
        rng = np.random.default_rng(seed)
        n = bands * rows
        # 32-bit coefficients keep a*h + b inside uint64 for 32-bit shingle hashes
        self.a = rng.integers(1, 1 << 32, size=n, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)

    def shingles(self, tokens: list[str]) -> np.ndarray:
        n = self.ngram
        if len(tokens) < n:
            grams = [" ".join(tokens)] if tokens else []
        else:
            grams = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        unique = set(grams)
        return np.fromiter(
            (xxhash.xxh32_intdigest(g.encode()) for g in unique), dtype=np.uint64, count=len(unique)
        )

    def signature(self, text: str) -> np.ndarray | None:
        shingles = self.shingles(words(text))
        if shingles.size == 0:
            return None
        values = (shingles[:, None] * self.a[None, :] + self.b[None, :]) % _PRIME
        return (values & _MASK32).min(axis=0)

    def band_keys(self, text: str) -> list[bytes]:
        sig = self.signature(text)
        if sig is None:
            return []
        sig = sig.astype(np.uint32).reshape(self.bands, self.rows)
        return [xxhash.xxh64_digest(band.tobytes(), seed=i) for i, band in enumerate(sig)]


class NearDupIndex:
    """First-come LSH index: a document colliding with a kept one in any band is a near-duplicate."""

    def __init__(self) -> None:
        self._bands: list[dict[bytes, str]] = []

    def check_and_add(self, doc_id: str, keys: list) -> str | None:
        """Return the id of the kept document this one duplicates, or None (and index it)."""
        if len(self._bands) < len(keys):
            self._bands += [{} for _ in range(len(keys) - len(self._bands))]
        for band, key in zip(self._bands, keys):
            if key in band:
                return band[key]
        for band, key in zip(self._bands, keys):
            band[key] = doc_id
        return None

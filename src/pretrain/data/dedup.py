"""Exact and near-duplicate removal across the whole corpus as sharded stages (no process holds the corpus).

    pass (N tasks)       per kept document: one exact key (xxh3 of the text lower-cased, whitespace collapsed)
                         and `bands` MinHash LSH band keys, written as sorted runs of (key, doc, kind) records
                         (records.SignatureRuns: at most SIG_RUN_RECORDS in memory per task)
    buckets (B tasks)    bucket b takes the key range [b, b+1) * 2^64 / B of every run (binary search in the
                         memory-mapped sorted runs: it reads only its slice), sorts it, and writes an edge from
                         every document of a key group to the group's first document
    cluster (1 task)     connected components over the edges (scipy); in every cluster the document first in
                         corpus order is kept, the others are removed -> records.removed_file
    filter (N tasks)     each task drops its removed documents while writing the mix (curate.py)

Why this shape rather than datatrove's MinhashDedup* stages: they hash, bucket, cluster and filter the same
way, but write their own signature files per bucket and index documents per task file, so a result depends
on the number of tasks; here a document is named by its global key (sources.doc_key), so the kept set is the
same for any number of tasks, exact and near duplicates share one set of files and stages, and memory per
task is bounded by SIG_RUN_RECORDS (pass) and by the bucket size (B grows with the number of signatures,
`bucket_count`). The cluster step holds only the duplicate edges — what datatrove's cluster step holds too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xxhash

from pretrain.data.records import (
    EDGE_DTYPE,
    KIND_EXACT,
    REMOVED_DTYPE,
    SIG_DTYPE,
    edges_file,
    removed_file,
    save_array,
    signature_runs,
)

_WORD = re.compile(r"\w+", re.UNICODE)
BUCKET_BYTES = 256 << 20  # signature bytes one bucket task holds at most (sets the number of buckets)


def exact_key(text: str) -> bytes:
    return xxhash.xxh3_128(" ".join(text.lower().split()).encode("utf-8")).digest()


def exact_key64(text: str) -> int:
    """The exact-dedup key as a uint64 (the first 8 bytes of `exact_key`)."""
    return int.from_bytes(exact_key(text)[:8], "little")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


_WINDOW_BASE = 0x9E3779B97F4A7C15  # odd, so invertible mod 2^64: the powers below are distinct mod 2^64


def word_hashes(tokens: list[str]) -> np.ndarray:
    """One 64-bit hash per word: n-gram hashes are then combined arithmetically, never from joined strings."""
    return np.fromiter(  # map over builtins: no Python frame per word
        map(xxhash.xxh3_64_intdigest, map(str.encode, tokens)), dtype=np.uint64, count=len(tokens)
    )


class _Powers:
    """B^k and B^-k mod 2^64 for k < len, grown on demand (B = _WINDOW_BASE) to the longest document seen:
    16 bytes per word (~8 MB at `filters.max_chars`' default of 1M characters)."""

    def __init__(self):
        self.up = np.empty(0, dtype=np.uint64)
        self.down = np.empty(0, dtype=np.uint64)

    def upto(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < length:
            size = max(length, 2 * len(self.up), 4096)
            with np.errstate(over="ignore"):
                self.up = np.cumprod(np.full(size, _WINDOW_BASE, dtype=np.uint64), dtype=np.uint64)
                self.down = np.cumprod(
                    np.full(size, pow(_WINDOW_BASE, -1, 1 << 64), dtype=np.uint64), dtype=np.uint64
                )
            self.up = np.concatenate([[np.uint64(1)], self.up[:-1]])  # B^0 .. B^(size-1)
            self.down = np.concatenate([[np.uint64(1)], self.down[:-1]])
        return self.up, self.down


_powers = _Powers()


class WindowHashes:
    """`window_hashes(hashes, n)` for any n from one pass over the words (decontamination asks for several n).

    With prefix sums Q[j] = sum_{k<j} h[k] B^-k (mod 2^64, B odd so B^-1 exists), the window at i of
    length n is B^(i+n-1) (Q[i+n] - Q[i]): equal, mod 2^64, to the polynomial sum of `window_hashes`."""

    def __init__(self, hashes: np.ndarray):
        self.length = len(hashes)
        up, down = _powers.upto(self.length + 1)
        self._up = up
        with np.errstate(over="ignore"):
            self._prefix = np.concatenate(
                [[np.uint64(0)], np.cumsum(hashes * down[: self.length], dtype=np.uint64)]
            )

    def __call__(self, n: int) -> np.ndarray:
        if self.length < n or n <= 0:
            return np.empty(0, dtype=np.uint64)
        q = self._prefix
        with np.errstate(over="ignore"):
            return (q[n:] - q[:-n]) * self._up[n - 1 : self.length]


def window_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of every run of `n` consecutive words: sum of h[i+k] * B^(n-1-k), wrapping mod 2^64."""
    return WindowHashes(hashes)(n)


class MinHasher:
    """Signatures of word n-gram shingles; `band_keys` gives one hashable key per LSH band."""

    def __init__(self, ngram: int, bands: int, rows: int, seed: int):
        self.ngram, self.bands, self.rows = ngram, bands, rows
        rng = np.random.default_rng(seed)
        n = bands * rows
        # multiply-shift hashing (a odd, wrapping mod 2^64, keep the high 32 bits): a 2-universal family
        # without the modulo by a prime, which cost more than the rest of the signature together
        self.a = rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=n, dtype=np.uint64)

    def shingles(self, tokens: list[str], hashes: np.ndarray | None = None) -> np.ndarray:
        """The distinct 32-bit hashes of the word n-grams (the whole text when it has fewer words)."""
        if not tokens:
            return np.empty(0, dtype=np.uint64)
        hashes = word_hashes(tokens) if hashes is None else hashes
        grams = window_hashes(hashes, min(self.ngram, len(tokens)))
        return np.unique(grams)

    def signature(self, text: str, tokens: list[str] | None = None, hashes: np.ndarray | None = None):
        tokens = words(text) if tokens is None else tokens
        if not tokens:
            return None
        hashes = word_hashes(tokens) if hashes is None else hashes
        # a minimum over the n-grams needs no np.unique (repeats do not change it), and the high 32 bits
        # of the minimum are the minimum of the high 32 bits: one pass over the (n-grams x hashes) values
        grams = window_hashes(hashes, min(self.ngram, len(tokens)))
        with np.errstate(over="ignore"):
            values = np.multiply(grams[:, None], self.a[None, :])
            np.add(values, self.b[None, :], out=values)
        return values.min(axis=0) >> np.uint64(32)

    def band_keys(self, text: str) -> list[bytes]:
        sig = self.signature(text)
        if sig is None:
            return []
        sig = sig.astype(np.uint32).reshape(self.bands, self.rows)
        return [xxhash.xxh64_digest(band.tobytes(), seed=i) for i, band in enumerate(sig)]

    def band_keys64(
        self, text: str, tokens: list[str] | None = None, hashes: np.ndarray | None = None
    ) -> np.ndarray:
        """The band keys as uint64 (band i's key is seeded by i, so equal keys mean the same band).

        `tokens` / `hashes`: the text's `words` and their `word_hashes`, when the caller has them already."""
        sig = self.signature(text, tokens, hashes)
        if sig is None:
            return np.empty(0, dtype=np.uint64)
        sig = sig.astype(np.uint32).reshape(self.bands, self.rows)
        return np.fromiter(
            (xxhash.xxh64_intdigest(band.tobytes(), seed=i) for i, band in enumerate(sig)),
            dtype=np.uint64,
            count=self.bands,
        )


def bucket_count(signature_records: int, minimum: int) -> int:
    """Enough buckets that none holds more than BUCKET_BYTES of signatures (keys are uniform hashes)."""
    return max(minimum, -(-signature_records * SIG_DTYPE.itemsize // BUCKET_BYTES), 1)


def _bucket_bounds(bucket: int, buckets: int) -> tuple[int, int | None]:
    lo = (bucket << 64) // buckets
    hi = ((bucket + 1) << 64) // buckets
    return lo, (None if hi >= 1 << 64 else hi)


def find_duplicates(work: Path, bucket: int, buckets: int) -> int:
    """Bucket stage: write the edges of key range `bucket` of `buckets`; returns the number of edges."""
    lo, hi = _bucket_bounds(bucket, buckets)
    parts = []
    for run in signature_runs(work):
        records = np.load(run, mmap_mode="r")
        keys = records["key"]
        a = int(np.searchsorted(keys, np.uint64(lo), side="left"))
        b = len(records) if hi is None else int(np.searchsorted(keys, np.uint64(hi), side="left"))
        if b > a:
            parts.append(np.array(records[a:b]))
    edges = duplicate_edges(np.concatenate(parts) if parts else np.empty(0, dtype=SIG_DTYPE))
    save_array(edges_file(work, bucket), edges)
    return len(edges)


def duplicate_edges(records: np.ndarray) -> np.ndarray:
    """An edge (doc -> first doc) for every document of a (key, kind) group but the group's first."""
    if len(records) == 0:
        return np.empty(0, dtype=EDGE_DTYPE)
    records = records[np.lexsort((records["doc"], records["kind"], records["key"]))]
    same = (records["key"][1:] == records["key"][:-1]) & (records["kind"][1:] == records["kind"][:-1])
    starts = np.concatenate([[True], ~same])
    first_index = np.maximum.accumulate(np.where(starts, np.arange(len(records)), 0))
    dup = ~starts & (records["doc"] != records["doc"][first_index])  # a document twice in one group: no edge
    edges = np.empty(int(dup.sum()), dtype=EDGE_DTYPE)
    edges["doc"], edges["first"] = records["doc"][dup], records["doc"][first_index[dup]]
    edges["kind"] = records["kind"][dup]
    return np.unique(edges)


def cluster_duplicates(work: Path, buckets: int) -> np.ndarray:
    """Cluster stage: connected components of all edges; every member but the first (smallest key) is removed.

    A removed document is labelled exact when an exact-key edge leads to it, else near. Writes and returns
    the REMOVED_DTYPE array sorted by document.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate(
        [np.load(edges_file(work, b)) for b in range(buckets)] or [np.empty(0, EDGE_DTYPE)]
    )
    removed = np.empty(0, dtype=REMOVED_DTYPE)
    if len(edges):
        nodes, inverse = np.unique(np.concatenate([edges["doc"], edges["first"]]), return_inverse=True)
        src, dst = inverse[: len(edges)], inverse[len(edges) :]
        graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (src, dst)), shape=(len(nodes), len(nodes)))
        _, labels = connected_components(graph, directed=False)
        root = np.full(labels.max() + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
        np.minimum.at(root, labels, nodes)  # nodes are sorted: the root is the earliest document
        roots = root[labels]
        gone = nodes != roots
        removed = np.empty(int(gone.sum()), dtype=REMOVED_DTYPE)
        removed["doc"], removed["root"] = nodes[gone], roots[gone]
        exact_docs = np.unique(edges["doc"][edges["kind"] == KIND_EXACT])
        removed["kind"] = np.where(np.isin(removed["doc"], exact_docs), KIND_EXACT, 1)
    save_array(removed_file(work), removed)
    return removed


def load_removed(work: Path) -> np.ndarray:
    return np.load(removed_file(work))


def is_removed(removed: np.ndarray, doc: int) -> int | None:
    """The removal kind of `doc` (KIND_EXACT / KIND_NEAR), or None when it is kept."""
    docs = removed["doc"]
    i = int(np.searchsorted(docs, np.uint64(doc)))
    if i < len(docs) and int(docs[i]) == doc:
        return int(removed["kind"][i])
    return None

"""Dedup (data/dedup.py): exact keys ignore case and spacing; MinHash LSH pairs near-duplicates only; bucketed\nedges and clustering keep the earliest copy whatever the number of buckets."""

from __future__ import annotations

import random

import numpy as np

from pretrain.config.data import DedupConfig
from pretrain.data.dedup import (
    MinHasher,
    WindowHashes,
    bucket_count,
    cluster_duplicates,
    duplicate_edges,
    exact_key,
    exact_key64,
    find_duplicates,
    window_hashes,
    word_hashes,
    words,
)
from pretrain.data.records import KIND_EXACT, KIND_NEAR, SIG_DTYPE, SignatureRuns

VOCAB = [f"w{i}" for i in range(3000)]


def _doc(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def _edited(text: str, changes: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    tokens = text.split()
    for i in rng.sample(range(len(tokens)), changes):
        tokens[i] = "changed"
    return " ".join(tokens)


def _hasher() -> MinHasher:
    d = DedupConfig()
    return MinHasher(d.ngram, d.bands, d.rows, d.seed)


def test_exact_key_ignores_case_and_whitespace_only():
    assert exact_key("Hello  World\n") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello, world")
    assert len(exact_key("x")) == 16


def test_words_are_lowercased_word_characters():
    assert words("Hello, World! x_1 é") == ["hello", "world", "x_1", "é"]


def _polynomial_windows(hashes: np.ndarray, n: int) -> list[int]:
    """The definition, in Python integers: sum of h[i+k] * B^(n-1-k) mod 2^64 for every window."""
    base, mod = 0x9E3779B97F4A7C15, 1 << 64
    h = [int(x) for x in hashes]
    return [sum(h[i + k] * pow(base, n - 1 - k, mod) for k in range(n)) % mod for i in range(len(h) - n + 1)]


def test_window_hashes_from_prefix_sums_equal_the_polynomial_definition():
    rng = np.random.default_rng(3)
    for length in (0, 1, 7, 13, 14, 60, 5000):  # 5000 grows the cached powers past their first size
        hashes = rng.integers(0, 1 << 64, size=length, dtype=np.uint64)
        windows = WindowHashes(hashes)
        for n in (1, 2, 8, 13, 20):
            expected = _polynomial_windows(hashes, n) if length >= n else []
            got = window_hashes(hashes, n)
            assert got.dtype == np.uint64 and got.tolist() == expected
            assert windows(n).tolist() == expected
    hashes = word_hashes(words("the cat sat on the mat and the cat sat on the mat again"))
    assert window_hashes(hashes, 5)[0] == window_hashes(hashes, 5)[7]  # equal windows, equal hashes
    assert window_hashes(hashes, 0).size == 0


def test_near_duplicate_shares_a_band_and_unrelated_does_not():
    hasher = _hasher()
    original = _doc(1)
    near, unrelated = _edited(original, 3), _doc(2)
    keys = hasher.band_keys(original)
    assert len(keys) == DedupConfig().bands
    assert set(keys) & set(hasher.band_keys(near))
    assert not set(keys) & set(hasher.band_keys(unrelated))


def test_band_keys_are_deterministic_for_a_seed():
    d = DedupConfig()
    text = _doc(3)
    assert _hasher().band_keys(text) == _hasher().band_keys(text)
    assert MinHasher(d.ngram, d.bands, d.rows, seed=d.seed + 1).band_keys(text) != _hasher().band_keys(text)


def test_short_and_empty_texts():
    hasher = _hasher()
    assert hasher.band_keys("") == []
    assert hasher.band_keys("two words") == hasher.band_keys("Two, words!")  # fewer words than the n-gram


def _signatures(tmp_path, docs: dict[int, str], runs_per_task: int = 2) -> None:
    """Write the sorted signature runs two pass tasks would write for `docs` (key -> text)."""
    hasher = _hasher()
    keys = sorted(docs)
    for task in range(2):
        folder = tmp_path / "pass" / f"t{task:05d}"
        folder.mkdir(parents=True)
        runs = SignatureRuns(folder, run_records=(len(keys) // 2 * (hasher.bands + 1)) // runs_per_task + 1)
        for key in keys[task::2]:
            runs.add(np.array([exact_key64(docs[key])], dtype=np.uint64), key, KIND_EXACT)
            runs.add(hasher.band_keys64(docs[key]), key, KIND_NEAR)
        runs.flush()


def _removed(tmp_path, docs, buckets: int) -> dict[int, tuple[int, int]]:
    work = tmp_path / f"b{buckets}"
    _signatures(work, docs)
    (work / "dedup").mkdir()
    for bucket in range(buckets):
        find_duplicates(work, bucket, buckets)
    removed = cluster_duplicates(work, buckets)
    return {int(r["doc"]): (int(r["root"]), int(r["kind"])) for r in removed}


def test_clusters_keep_the_earliest_document_for_any_number_of_buckets(tmp_path):
    original = _doc(4)
    docs = {
        10: _doc(1),
        20: original,
        30: _doc(2),
        40: _edited(original, 3),
        50: original.upper(),
        60: _doc(3),
    }
    docs[70] = _edited(docs[40], 3, seed=5)  # near 40, so in 20's cluster (transitively)
    docs[5] = _doc(2)  # an exact copy of 30, earlier in corpus order
    expected = {40: (20, KIND_NEAR), 50: (20, KIND_EXACT), 70: (20, KIND_NEAR), 30: (5, KIND_EXACT)}
    for buckets in (1, 3, 7):
        assert _removed(tmp_path, docs, buckets) == expected, buckets


def test_a_bucket_reads_only_its_key_range(tmp_path):
    docs = {k: _doc(k) for k in range(200)}
    _signatures(tmp_path, docs, runs_per_task=3)
    total = sum(len(np.load(f)) for f in (tmp_path / "pass").glob("t*/sig-*.npy"))
    assert total == 200 * (DedupConfig().bands + 1)
    (tmp_path / "dedup").mkdir()
    held = []
    real_concat = np.concatenate

    def recording(parts, *args, **kwargs):
        out = real_concat(parts, *args, **kwargs)
        held.append(len(out))
        return out

    np.concatenate = recording
    try:
        find_duplicates(tmp_path, 2, 8)
    finally:
        np.concatenate = real_concat
    assert held and max(held) < total / 8 * 1.5  # about 1/8 of the signatures, not all of them


def test_duplicate_edges_point_at_the_first_of_each_group():
    records = np.array([(7, 3, 1), (7, 1, 1), (7, 2, 1), (9, 4, 0), (9, 4, 0), (7, 5, 0)], dtype=SIG_DTYPE)
    edges = duplicate_edges(records)
    assert sorted((int(e["doc"]), int(e["first"]), int(e["kind"])) for e in edges) == [(2, 1, 1), (3, 1, 1)]
    assert bucket_count(10, 4) == 4 and bucket_count(10**9, 1) > 1

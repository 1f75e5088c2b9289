"""Dedup keys (data/dedup.py): exact keys ignore case and spacing; MinHash LSH pairs near-duplicates only."""

from __future__ import annotations

import random

from pretrain.config.data import DedupConfig
from pretrain.data.dedup import MinHasher, NearDupIndex, exact_key, words

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


def test_index_returns_the_first_kept_copy():
    hasher, index = _hasher(), NearDupIndex()
    original = _doc(4)
    assert index.check_and_add("a", hasher.band_keys(original)) is None
    assert index.check_and_add("b", hasher.band_keys(_doc(5))) is None
    assert index.check_and_add("c", hasher.band_keys(_edited(original, 3))) == "a"
    assert index.check_and_add("d", hasher.band_keys(_edited(original, 4, seed=1))) == "a"

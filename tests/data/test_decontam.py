"""Decontamination (data/decontam.py): n-gram overlap with an evaluation item names the task."""

from __future__ import annotations

import numpy as np

from pretrain.data.decontam import MIN_SHORT, ContaminationIndex

ITEM = "the quick brown fox jumps over the lazy dog near the quiet river bank today"  # 15 words
SHORT_ITEM = "what does the python keyword yield return to callers"  # 9 words: under 13, at least MIN_SHORT
TINY_ITEM = "is it true"  # under MIN_SHORT words: too common to index


def _index(ngram: int = 13) -> ContaminationIndex:
    return ContaminationIndex({"long_task": [ITEM], "short_task": [SHORT_ITEM], "tiny": [TINY_ITEM]}, ngram)


def test_a_shared_ngram_names_the_task():
    window = " ".join(ITEM.split()[1:14])  # 13 consecutive words of the item
    assert _index().match(f"Some preamble. {window.upper()}, and more text after it.") == "long_task"


def test_twelve_shared_words_are_not_enough():
    window = " ".join(ITEM.split()[:12])
    assert _index().match(f"Some preamble {window} and more") is None


def test_short_items_match_as_a_whole():
    assert len(SHORT_ITEM.split()) >= MIN_SHORT
    assert _index().match(f"Q: {SHORT_ITEM}? A: a generator value.") == "short_task"
    assert _index().match("what does the python keyword yield") is None


def test_tiny_items_and_clean_text_do_not_match():
    assert _index().match("is it true that this document is clean? yes it is true") is None


def test_the_ngram_size_is_configurable_and_an_empty_index_is_false():
    window = " ".join(ITEM.split()[:8])
    assert _index(ngram=8).match(window) == "long_task"
    assert not ContaminationIndex({}, 13)
    assert ContaminationIndex({}, 13).match(ITEM) is None
    assert _index()


def test_the_bit_filter_passes_every_item_and_stops_clean_text():
    """The filter in front of the exact lookup has no false negatives (every ngram key passes it, and every
    item, long or short, is found inside a document), and rejects almost every window of unrelated text."""
    rng = np.random.default_rng(0)
    items = [
        " ".join(f"w{i}" for i in rng.integers(0, 5000, size=int(rng.integers(MIN_SHORT, 40))))
        for _ in range(2000)
    ]
    index = ContaminationIndex({"a": items[::2], "b": items[1::2]}, 13)
    assert index.filter_hits(index._keys[13]).all()
    assert len(index.lengths) == 6  # 8-12 word items and 13-grams
    for i, item in enumerate(items):
        assert index.match(f"x{i} y z {item} and the rest") == ("a" if i % 2 == 0 else "b"), item
    clean = rng.integers(0, 1 << 64, size=200_000, dtype=np.uint64)
    assert index.filter_hits(clean).sum() < 20  # ~1e-5 per window at 512 bits per key

"""The shared word split (data/words.py): token ids index the vocabulary that gave them (also across a cache
reset), per-token columns are computed once per token, and the shortcut shapes split as spaCy's rules do."""

from __future__ import annotations

import string

import numpy as np
import pytest

pytest.importorskip("spacy")

from pretrain.data import words as words_mod  # noqa: E402
from pretrain.data.words import (  # noqa: E402
    CLOSING_MARKS,
    OPENING_MARKS,
    DocumentWords,
    SpacyWordSplitter,
    Vocabulary,
)


@pytest.fixture(scope="module")
def splitter() -> SpacyWordSplitter:
    return SpacyWordSplitter()


def test_shortcut_shapes_split_like_spacys_rules(splitter):
    """Letters-only chunks and ASCII words wrapped in opening / closing marks skip the affix loop: the same
    tokens as `_split_chunk` for words (exceptions among them: "Dr", "cannot", "em", ...) with up to two
    opening and two closing marks, every 1-letter word with every mark, and every exception with a mark."""
    words = [
        "a",
        "I",
        "the",
        "Well",
        "said",
        "GmbH",
        "cannot",
        "don",
        "Dr",
        "Mr",
        "vs",
        "em",
        "ll",
        "s",
        "co",
    ]
    opening = ["", *OPENING_MARKS, *(a + b for a in OPENING_MARKS for b in OPENING_MARKS)]
    closing = ["", *CLOSING_MARKS, *(a + b for a in CLOSING_MARKS for b in CLOSING_MARKS)]
    chunks = [o + w + c for w in words for o in opening for c in closing]
    chunks += [o + letter + c for letter in string.ascii_letters for o in ("", "(") for c in closing]
    chunks += [special + mark for special in splitter._specials for mark in CLOSING_MARKS]
    chunks += [mark + special for special in splitter._specials for mark in OPENING_MARKS]
    chunks += ["U.S.", "don't.", "café,", "naïve.", "well-known,", "(1914)", "e.g.,", "“Dr.", "said.”"]
    differ = [c for c in chunks if splitter._chunk_tokens(c) != splitter._split_chunk(c)]
    assert not differ, differ[:10]
    assert splitter._chunk_tokens("him.") == ("him", ".")
    assert splitter._chunk_tokens("“Well,”") == ("“", "Well", ",", "”")
    assert splitter._chunk_tokens("GmbH.") == ("GmbH.",)  # a period only splits after a lower-case letter
    assert (
        sum(splitter._simple_tokens(c) is not None for c in chunks) > len(chunks) / 2
    )  # the shortcut is used


def test_ids_index_their_own_vocabulary_across_a_reset(monkeypatch):
    monkeypatch.setattr(words_mod, "_splitter", SpacyWordSplitter())
    monkeypatch.setattr(words_mod, "CHUNK_CACHE_SIZE", 4)
    first = DocumentWords("The cat, the dog and the bird sat on the mat.")
    assert first.tokens == [
        "The",
        "cat",
        ",",
        "the",
        "dog",
        "and",
        "the",
        "bird",
        "sat",
        "on",
        "the",
        "mat",
        ".",
    ]
    second = DocumentWords("A completely different sentence with new words!")
    second.token_ids  # noqa: B018 - the cache is over its size: a new vocabulary
    assert second.vocab is not first.vocab
    assert first.tokens[:3] == ["The", "cat", ","]  # still read through the first vocabulary
    assert second.tokens == ["A", "completely", "different", "sentence", "with", "new", "words", "!"]
    ids = first.token_ids
    assert ids[3] == ids[6] == ids[10]  # "the" has one id


def test_columns_are_computed_once_per_token_and_extended():
    vocab = Vocabulary()
    calls = []

    def length(token: str) -> int:
        calls.append(token)
        return len(token)

    a, bb = vocab.add("a"), vocab.add("bb")
    assert vocab.add("a") == a
    assert vocab.column("len", length, np.int64).tolist() == [1, 2]
    vocab.add("ccc")
    col = vocab.column("len", length, np.int64)
    assert col.tolist() == [1, 2, 3] and calls == ["a", "bb", "ccc"]
    assert col[np.array([bb, a, bb])].tolist() == [2, 1, 2]
    assert Vocabulary().column("len", length, np.int64).size == 0

"""BPE merges continued from a parent's vocabulary: most frequent pair first, never a token the parent has."""

from __future__ import annotations

from tokenizers import Tokenizer
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import Whitespace

from pretrain.tokens.merges import learn_merges

CHARS = "abcdxyz"


def _parent() -> tuple[Tokenizer, dict[int, str]]:
    """A parent BPE with single characters and no merges, words split on whitespace: each word is its
    characters' ids, as a real parent's pre-tokenized words are its tokens' ids."""
    vocab = {c: i for i, c in enumerate(CHARS)}
    tok = Tokenizer(BPE(vocab, []))
    tok.pre_tokenizer = Whitespace()
    return tok, {i: c for c, i in vocab.items()}


def test_the_most_frequent_pair_merges_first_and_its_word_goes_on_merging():
    tok, id_to_token = _parent()
    merges = learn_merges(tok, ["abab abab abab cd"], 2, 1, 100, id_to_token, set(CHARS), set())
    assert merges == [("a", "b", 100, "ab"), ("ab", "ab", 101, "abab")]


def _learn(texts, count=10, min_frequency=1, existing=(), excluded=()):
    tok, id_to_token = _parent()
    return learn_merges(
        tok, texts, count, min_frequency, 100, id_to_token, set(CHARS) | set(existing), set(excluded)
    )


def test_a_pair_the_parent_already_has_is_skipped():
    merges = _learn(["abab abab abab cd cd"], count=1, existing={"ab"})
    assert merges == [("b", "a", 100, "ba")]  # "ab" (6 times) is the parent's: next "ba" (3), not "cd" (2)


def test_merging_stops_below_the_minimum_frequency():
    assert _learn(["abab abab abab cd"], min_frequency=2) == [
        ("a", "b", 100, "ab"),
        ("ab", "ab", 101, "abab"),
    ]
    assert _learn(["cd"], min_frequency=2) == []


def test_excluded_ids_are_never_merged_and_ties_go_to_the_smaller_ids():
    assert _learn(["xy cd"], count=1) == [("c", "d", 100, "cd")]  # both once: (2, 3) before (4, 5)
    assert _learn(["xy cd"], count=2, excluded={CHARS.index("c")}) == [("x", "y", 100, "xy")]

"""A document's words, split once and shared by the quality filters, decontamination and MinHash.

Two splits, each computed at most once per document (lazily, on first use):

- `token_ids`: the words the Gopher / FineWeb quality rules count, exactly as datatrove's `split_into_words`
  gets them from spaCy's English tokenizer, without running spaCy's pipeline (~0.15 MB/s per core there):
  `SpacyWordSplitter` applies spaCy's own English rules (its prefix, suffix and infix expressions, its
  exception table and URL matcher, read from `spacy.lang.en`) with spaCy's algorithm — per whitespace-separated
  chunk, strip prefixes and suffixes (stopping at an exception), then split the rest at its infixes — ported
  to Python, and caches the tokens of every chunk: prose repeats its chunks ("the", "said,", "him."), so most
  chunks cost one dict lookup. What it leaves out is spaCy's second pass that re-merges exceptions spanning
  several tokens (emoticons and the like inside punctuation); agreement is measured against datatrove's
  filters in tests/data/test_filter_agreement.py. The words come as integer ids into a `Vocabulary`, whose
  per-token columns (length, "has a letter", "is a stop word", ...) the filters compute once per distinct
  token and then read for a whole document with one numpy gather, instead of a Python loop per word.
  `tokens` gives the words as strings.
- `lower_words` / `hashes`: the lower-cased `\\w+` words and their 64-bit hashes that decontamination and the
  MinHash shingles are built from (dedup.words / dedup.word_hashes; unchanged, so dedup results are too).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np

from pretrain.data.dedup import word_hashes, words

# chunks whose token ids are remembered and distinct tokens given ids: when either is full, both start again
# empty with the next document, so a task's memory stays flat (~80 MB at most). The 20 MB of real corpora that
# bench/data_scale.py draws from have ~180k distinct chunks and ~77k distinct tokens: they fit.
CHUNK_CACHE_SIZE = 1 << 18
VOCAB_SIZE = 1 << 18
CLOSING_MARKS = frozenset(',.;:!?"”’)]')
OPENING_MARKS = frozenset('"“‘([')


class Vocabulary:
    """Distinct tokens <-> ids, and per-token columns (`column`) computed once per token.

    A document's ids are only meaningful with the vocabulary that gave them (`DocumentWords.vocab`)."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.strings: list[str] = []
        self._columns: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.strings)

    def add(self, token: str) -> int:
        i = self.ids.get(token)
        if i is None:
            i = self.ids[token] = len(self.strings)
            self.strings.append(token)
        return i

    def column(self, name: str, fn: Callable[[str], object], dtype) -> np.ndarray:
        """`fn(token)` for every id so far, as an array indexed by id; `name` identifies `fn` (computed once
        per token: later calls only extend the array by the tokens added since)."""
        col = self._columns.get(name)
        done = 0 if col is None else len(col)
        if done < len(self.strings):
            fresh = np.fromiter(map(fn, self.strings[done:]), dtype=dtype, count=len(self.strings) - done)
            col = fresh if col is None else np.concatenate([col, fresh])
            self._columns[name] = col
        return col if col is not None else np.empty(0, dtype=dtype)


class SpacyWordSplitter:
    """spaCy's English tokenizer rules, applied chunk by chunk with a cache of each chunk's tokens."""

    def __init__(self):
        from spacy.lang.en import English
        from spacy.symbols import ORTH
        from spacy.util import compile_infix_regex, compile_prefix_regex, compile_suffix_regex

        defaults = English.Defaults
        self._prefix = compile_prefix_regex(defaults.prefixes).search
        self._suffix = compile_suffix_regex(defaults.suffixes).search
        self._infixes = compile_infix_regex(defaults.infixes).finditer
        self._token_match = defaults.token_match
        self._url_match = defaults.url_match
        self._specials = {
            orth: tuple(t[ORTH] for t in pieces) for orth, pieces in defaults.tokenizer_exceptions.items()
        }
        self._cache: dict[str, tuple[int, ...]] = {}
        self.vocab = Vocabulary()

    def __call__(self, text: str) -> list[str]:
        """The text's tokens as strings."""
        ids, vocab = self.split_ids(text)
        strings = vocab.strings
        return [strings[i] for i in ids.tolist()]

    def split_ids(self, text: str) -> tuple[np.ndarray, Vocabulary]:
        """The text's tokens as int64 ids, and the vocabulary they index."""
        if len(self._cache) > CHUNK_CACHE_SIZE or len(self.vocab) > VOCAB_SIZE:
            self._cache, self.vocab = {}, Vocabulary()  # documents split before keep the old vocabulary
        cache = self._cache
        chunks = text.split()
        found = list(map(cache.get, chunks))  # one C-level pass: most chunks were seen before
        if None in found:
            add = self.vocab.add
            for chunk in set(chunks).difference(cache):  # set operations: no Python loop over the hits
                cache[chunk] = tuple(map(add, self._chunk_tokens(chunk)))
            found = list(map(cache.get, chunks))
        return np.fromiter(chain.from_iterable(found), dtype=np.int64), self.vocab

    def _chunk_tokens(self, chunk: str) -> tuple[str, ...]:
        """The tokens of one whitespace-free chunk (`_split_chunk`, with shortcuts for the common shapes)."""
        if chunk not in self._specials:
            # a letters-only chunk has no affix or infix: it is one token unless an exception ("cannot")
            if chunk.isalpha():
                return (chunk,)
            simple = self._simple_tokens(chunk)
            if simple is not None:
                return simple
        return self._split_chunk(chunk)

    def _simple_tokens(self, chunk: str) -> tuple[str, ...] | None:
        """An ASCII word wrapped in opening and closing marks ("said," "him." "(see" "“Well,”"): every mark is
        an affix of its own and the word has no affix or infix, so the tokens are the marks and the word (a
        period only after a lower-case letter: "GmbH." and "J." stay whole). None for any other shape, or
        when any string spaCy's affix loop could look up on the way (the chunk less some of its opening and
        some of its closing marks) is an exception. Checked against `_split_chunk` in tests/data/test_words.py.
        """
        start, end = 0, len(chunk)
        while start < end and chunk[start] in OPENING_MARKS:
            start += 1
        while end > start and chunk[end - 1] in CLOSING_MARKS:
            if chunk[end - 1] == "." and not (chunk[end - 2].isascii() and chunk[end - 2].islower()):
                return None
            end -= 1
        core = chunk[start:end]
        if not (core.isascii() and core.isalpha()):
            return None
        specials = self._specials
        for i in range(start + 1):
            for j in range(end, len(chunk) + 1):
                if chunk[i:j] in specials:
                    return None
        return (*chunk[:start], core, *chunk[end:])

    def _matches(self, string: str) -> bool:
        return bool(
            (self._token_match and self._token_match(string)) or (self._url_match and self._url_match(string))
        )

    def _split_chunk(self, string: str) -> tuple[str, ...]:
        """spaCy's Tokenizer._split_affixes + _attach_tokens for one whitespace-free chunk."""
        specials = self._specials
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = -1
        while string and len(string) != last_size:
            if self._token_match and self._token_match(string):
                break
            if string in specials:
                break
            last_size = len(string)
            match = self._prefix(string)
            pre_len = match.end() - match.start() if match else 0
            if pre_len:
                prefix, minus_pre = string[:pre_len], string[pre_len:]
                if minus_pre and minus_pre in specials:
                    string = minus_pre
                    prefixes.append(prefix)
                    break
            match = self._suffix(string[pre_len:])
            suf_len = match.end() - match.start() if match else 0
            if suf_len:
                suffix, minus_suf = string[-suf_len:], string[:-suf_len]
                if minus_suf and minus_suf in specials:
                    string = minus_suf
                    suffixes.append(suffix)
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                string = string[pre_len:-suf_len]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre_len:
                string = minus_pre
                prefixes.append(prefix)
            elif suf_len:
                string = minus_suf
                suffixes.append(suffix)
        tokens = prefixes
        if string:
            if string in specials:
                tokens.extend(specials[string])
            elif self._matches(string):
                tokens.append(string)
            else:
                start = 0
                for match in self._infixes(string):
                    infix_start, infix_end = match.start(), match.end()
                    if infix_start == 0:  # an infix at the very start is not split off (spaCy does the same)
                        continue
                    if infix_start != start:
                        tokens.append(string[start:infix_start])
                    if infix_start != infix_end:
                        tokens.append(string[infix_start:infix_end])
                    start = infix_end
                if string[start:]:
                    tokens.append(string[start:])
        tokens.extend(reversed(suffixes))
        return tuple(t for t in (t.strip() for t in tokens) if t)


_splitter: SpacyWordSplitter | None = None


def splitter() -> SpacyWordSplitter:
    """The process's splitter (spaCy's rules are read once per process)."""
    global _splitter
    if _splitter is None:
        _splitter = SpacyWordSplitter()
    return _splitter


def split_words(text: str) -> list[str]:
    """The text's words as datatrove's `split_into_words` (spaCy English) returns them (see module doc)."""
    return splitter()(text)


class DocumentWords:
    """One document and its word splits, each computed on first use and then shared."""

    __slots__ = ("text", "_token_ids", "_vocab", "_lower_words", "_hashes")

    def __init__(self, text: str):
        self.text = text
        self._token_ids: np.ndarray | None = None
        self._vocab: Vocabulary | None = None
        self._lower_words: list[str] | None = None
        self._hashes: np.ndarray | None = None

    def _split(self) -> None:
        if self._token_ids is None:
            self._token_ids, self._vocab = splitter().split_ids(self.text)

    @property
    def token_ids(self) -> np.ndarray:
        """The quality filters' words (split_words) as int64 ids into `vocab`."""
        self._split()
        return self._token_ids

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary `token_ids` index (with its per-token columns)."""
        self._split()
        return self._vocab

    @property
    def tokens(self) -> list[str]:
        """The quality filters' words as strings (split_words)."""
        strings = self.vocab.strings
        return [strings[i] for i in self.token_ids.tolist()]

    @property
    def lower_words(self) -> list[str]:
        """The lower-cased `\\w+` words of decontamination and MinHash (dedup.words)."""
        if self._lower_words is None:
            self._lower_words = words(self.text)
        return self._lower_words

    @property
    def hashes(self) -> np.ndarray:
        """dedup.word_hashes of `lower_words`."""
        if self._hashes is None:
            self._hashes = word_hashes(self.lower_words)
        return self._hashes

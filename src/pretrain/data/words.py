"""A document's words, split once and shared by the quality filters, decontamination and MinHash.

Two splits, each computed at most once per document (lazily, on first use):

- `tokens`: the words the Gopher / FineWeb quality rules count, exactly as datatrove's `split_into_words`
  gets them from spaCy's English tokenizer, without running spaCy's pipeline (~0.15 MB/s per core there):
  `SpacyWordSplitter` applies spaCy's own English rules (its prefix, suffix and infix expressions, its
  exception table and URL matcher, read from `spacy.lang.en`) with spaCy's algorithm — per whitespace-separated
  chunk, strip prefixes and suffixes (stopping at an exception), then split the rest at its infixes — ported
  to Python, and caches the tokens of every chunk: prose repeats its chunks ("the", "said,", "him."), so most
  chunks cost one dict lookup. What it leaves out is spaCy's second pass that re-merges exceptions spanning
  several tokens (emoticons and the like inside punctuation); agreement is measured against datatrove's
  filters in tests/data/test_filter_agreement.py.
- `lower_words` / `hashes`: the lower-cased `\\w+` words and their 64-bit hashes that decontamination and the
  MinHash shingles are built from (dedup.words / dedup.word_hashes; unchanged, so dedup results are too).
"""

from __future__ import annotations

import numpy as np

from pretrain.data.dedup import word_hashes, words

# chunks whose tokens are remembered; the cache is emptied when full (~25 MB: a task's memory stays flat)
CHUNK_CACHE_SIZE = 1 << 17


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
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, text: str) -> list[str]:
        cache = self._cache
        if len(cache) > CHUNK_CACHE_SIZE:
            cache.clear()
        out: list[str] = []
        for chunk in text.split():
            tokens = cache.get(chunk)
            if tokens is None:
                # a letters-only chunk has no affix or infix: it is one token unless an exception ("cannot")
                plain = chunk.isalpha() and chunk not in self._specials
                tokens = cache[chunk] = (chunk,) if plain else self._split_chunk(chunk)
            out.extend(tokens)
        return out

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


def split_words(text: str) -> list[str]:
    """The text's words as datatrove's `split_into_words` (spaCy English) returns them (see module doc)."""
    global _splitter
    if _splitter is None:
        _splitter = SpacyWordSplitter()
    return _splitter(text)


class DocumentWords:
    """One document and its word splits, each computed on first use and then shared."""

    __slots__ = ("text", "_tokens", "_lower_words", "_hashes")

    def __init__(self, text: str):
        self.text = text
        self._tokens: list[str] | None = None
        self._lower_words: list[str] | None = None
        self._hashes: np.ndarray | None = None

    @property
    def tokens(self) -> list[str]:
        """The quality filters' words (split_words)."""
        if self._tokens is None:
            self._tokens = split_words(self.text)
        return self._tokens

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

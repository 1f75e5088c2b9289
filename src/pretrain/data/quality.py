"""The heuristic quality filters of web text, written over pre-split words (data/words.py) for speed.

`gopher_quality` and `gopher_repetition` (Rae et al. 2021, as datatrove implements them) and `fineweb_quality`
(Penedo et al. 2024) each return the name of the rule a document breaks, or None; data/filters.py chains them
with the recipe's other filters. tests/data/test_filter_agreement.py checks they agree with datatrove's own.
"""

from __future__ import annotations

import re

import numpy as np

from pretrain.data.words import DocumentWords


class _Rules:
    """datatrove's punctuation sets and its filters' default thresholds, read once from datatrove itself."""

    def __init__(self):
        from datatrove.pipeline.filters import (
            FineWebQualityFilter,
            GopherQualityFilter,
            GopherRepetitionFilter,
        )
        from datatrove.utils.text import PUNCTUATION_SET

        self.punctuation = "".join(sorted(PUNCTUATION_SET))  # str.strip(chars) empties a symbol-only word
        self.quality = GopherQualityFilter()
        self.repetition = GopherRepetitionFilter()
        self.fineweb = FineWebQualityFilter()


_rules: _Rules | None = None


def rules() -> _Rules:
    global _rules
    if _rules is None:
        _rules = _Rules()
    return _rules


def _has_letter(word: str) -> bool:
    return any(c.isalpha() for c in word)


def gopher_quality(doc: DocumentWords) -> str | None:
    """datatrove GopherQualityFilter.filter on the shared split: the drop reason, or None to keep.

    Per-word properties are the vocabulary's columns (computed once per distinct word), read with numpy."""
    r = rules()
    q = r.quality
    text, ids, vocab = doc.text, doc.token_ids, doc.vocab
    n_words = len(ids)
    punctuation = r.punctuation
    non_symbol = vocab.column("gopher_non_symbol", lambda w: bool(w.strip(punctuation)), np.bool_)[ids]
    n_non_symbol = int(np.count_nonzero(non_symbol))
    if q.min_doc_words and n_non_symbol < q.min_doc_words:
        return "gopher_short_doc"
    if q.max_doc_words and n_non_symbol > q.max_doc_words:
        return "gopher_long_doc"
    lengths = vocab.column("length", len, np.int64)[ids]
    avg = int(lengths[non_symbol].sum()) / n_non_symbol if n_non_symbol else float("nan")
    if q.min_avg_word_length and avg < q.min_avg_word_length:
        return "gopher_below_avg_threshold"
    if q.max_avg_word_length and avg > q.max_avg_word_length:
        return "gopher_above_avg_threshold"
    if q.max_symbol_word_ratio and text.count("#") / n_words > q.max_symbol_word_ratio:
        return "gopher_too_many_hashes"
    if q.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > q.max_symbol_word_ratio:
        return "gopher_too_many_ellipsis"
    lines = text.splitlines()
    if (
        q.max_bullet_lines_ratio
        and sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) > q.max_bullet_lines_ratio
    ):
        return "gopher_too_many_bullets"
    if (
        q.max_ellipsis_lines_ratio
        and sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) > q.max_ellipsis_lines_ratio
    ):
        return "gopher_too_many_end_ellipsis"
    if q.max_non_alpha_words_ratio:
        alpha_words = int(np.count_nonzero(vocab.column("has_letter", _has_letter, np.bool_)[ids]))
        if alpha_words / n_words < q.max_non_alpha_words_ratio:
            return "gopher_below_alpha_threshold"
    if q.min_stop_words:
        stop_words = q.stop_words
        is_stop = vocab.column("gopher_stop_word", stop_words.__contains__, np.bool_)
        if len(np.unique(ids[is_stop[ids]])) < q.min_stop_words:  # distinct stop words, as a set intersection
            return "gopher_enough_stop_words"
    return None


def _duplicates(elements: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (repeated elements, their characters), counting every repeat."""
    seen: set[str] = set(elements)
    if len(seen) == len(elements):  # nothing repeats (most documents): no loop
        return 0, 0
    seen = set()
    count = chars = 0
    for element in elements:
        if element in seen:
            count += 1
            chars += len(element)
        else:
            seen.add(element)
    return count, chars


_PARAGRAPH = re.compile(r"\n{2,}")


_LINES = re.compile("\n+")


_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)


def _ngram_keys(ids: np.ndarray, n_max: int) -> list[np.ndarray]:
    """keys[n] = a 64-bit key per window of n word ids (polynomial, wrapping): equal windows, equal keys."""
    keys = [np.empty(0, np.uint64), ids]
    with np.errstate(over="ignore"):
        for n in range(2, n_max + 1):
            prev = keys[-1]
            keys.append(prev[:-1] * _NGRAM_BASE + ids[n - 1 :] if len(prev) > 1 else np.empty(0, np.uint64))
    return keys


def _sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, group starts): `keys[order]` sorted, stably (a group's first index is its first occurrence).

    np.unique does the same, with more overhead per call than the sort itself costs on a document."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.empty(len(ordered), dtype=np.bool_)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    return order, np.flatnonzero(new)


def _top_ngram_chars(keys: np.ndarray, chars: np.ndarray) -> tuple[int, int]:
    """(characters of the most frequent n-gram times its count, that count); ties: the first to occur, as
    Counter does."""
    order, starts = _sorted_groups(keys)
    counts = np.diff(starts, append=len(keys))
    top = counts.max()
    winner = order[starts[counts == top]].min()
    return int(chars[winner]) * int(top), int(top)


def _repeated_ngram_chars(
    keys: np.ndarray, chars: np.ndarray, n: int, candidates: np.ndarray | None = None
) -> tuple[int | None, np.ndarray]:
    """datatrove's find_all_duplicate: scan the windows; a window seen before counts and skips n words.

    Only windows whose key occurs more than once can ever be "seen before", so the scan visits those alone.
    `candidates`: the only window positions that can repeat (all when None). Returns (the repeated
    characters, None when no window repeats at all; the sorted positions of the windows that repeat)."""
    positions = np.arange(len(keys)) if candidates is None else candidates
    order, starts = _sorted_groups(keys[positions])
    if len(starts) == len(positions):
        return None, positions[:0]
    counts = np.diff(starts, append=len(positions))
    repeated = positions[np.sort(order[np.repeat(counts > 1, counts)])]  # windows that repeat, in order
    seen: set[int] = set()
    total, idx = 0, 0
    for p, k, c in zip(repeated.tolist(), keys[repeated].tolist(), chars[repeated].tolist()):
        if p < idx:
            continue
        if k in seen:
            total += c
            idx = p + n
        else:
            seen.add(k)
            idx = p + 1
    return total, repeated


def gopher_repetition(doc: DocumentWords) -> str | None:
    """datatrove GopherRepetitionFilter.filter on the shared split: the drop reason, or None to keep.

    n-grams are compared as word-id sequences: datatrove compares the words joined without a separator for
    the duplicated 5-10-grams, where e.g. ("ab", "c") equals ("a", "bc"); such coincidences are the only
    difference (besides 64-bit key collisions, ~1e-15 per document)."""
    rep = rules().repetition
    text = doc.text
    if not text:
        return "empty"
    paragraphs = _PARAGRAPH.split(text.strip())
    dup, dup_chars = _duplicates(paragraphs)
    if rep.dup_para_frac and dup / len(paragraphs) > rep.dup_para_frac:
        return "dup_para_frac"
    if rep.dup_para_char_frac and dup_chars / len(text) > rep.dup_para_char_frac:
        return "dup_para_char_frac"
    lines = _LINES.split(text)
    dup, dup_chars = _duplicates(lines)
    if rep.dup_line_frac and dup / len(lines) > rep.dup_line_frac:
        return "dup_line_frac"
    if rep.dup_line_char_frac and dup_chars / len(text) > rep.dup_line_char_frac:
        return "dup_line_char_frac"
    word_ids = doc.token_ids
    n_words = len(word_ids)
    if not n_words:
        return None
    ids = word_ids.astype(np.uint64)
    lengths = doc.vocab.column("length", len, np.int64)[word_ids]
    cum = np.concatenate([[0], np.cumsum(lengths)])
    n_max = max([n for n, _ in rep.top_n_grams] + [n for n, _ in rep.dup_n_grams])
    keys = _ngram_keys(ids, min(n_max, n_words))
    # an n-gram occurs at most as often as its first m words (m < n): the count of the most frequent
    # m-gram bounds it, and when that bound times the longest n-gram cannot pass the threshold the n-gram
    # count is not needed
    bound_n, bound = 0, n_words
    for n, frac in rep.top_n_grams:
        if n > n_words:
            continue
        joined = cum[n:] - cum[:-n] + (n - 1)  # " ".join of each window
        if bound_n < n and bound * int(joined.max()) / len(text) <= frac:
            continue
        chars, count = _top_ngram_chars(keys[n], joined)
        if chars / len(text) > frac:
            return f"top_{n}_gram"
        bound_n, bound = n, count
    # a repeated n-gram at p has a repeated (n-1)-gram at p and at p + 1: only those positions are candidates
    # (none repeated at n: none above)
    repeats: tuple[int, np.ndarray] | None = None  # (n, positions of the repeated n-grams)
    for n, frac in rep.dup_n_grams:
        if n > n_words:
            continue
        candidates = None
        if repeats is not None and repeats[0] == n - 1:
            prev = np.zeros(n_words - n + 3, dtype=np.bool_)
            prev[repeats[1]] = True
            candidates = np.flatnonzero(prev[:-2] & prev[1:-1])
            if not len(candidates):
                break
        repeated, positions = _repeated_ngram_chars(keys[n], cum[n:] - cum[:-n], n, candidates)
        if repeated is None:
            break
        if repeated / len(text) > frac:
            return f"duplicated_{n}_n_grams"
        repeats = (n, positions)
    return None


def fineweb_quality(doc: DocumentWords) -> str | None:
    """datatrove FineWebQualityFilter.filter on the shared split: the drop reason, or None to keep."""
    f = rules().fineweb
    text = doc.text
    lines = [line for line in text.split("\n") if line.strip() != ""]
    if not lines:
        return "empty"
    ratio = sum(1 for line in lines if line.endswith(f.stop_chars)) / len(lines)
    if ratio < f.line_punct_thr and not (ratio == 0 and f.line_punct_exclude_zero):
        return "line_punct_ratio"
    ratio = sum(1 for line in lines if len(line) <= f.short_line_length) / len(lines)
    if ratio > f.short_line_threshold:
        return "short_line_ratio"
    if _duplicates(lines)[1] / len(text.replace("\n", "")) > f.char_duplicates_ratio:
        return "char_dup_ratio"
    if text.count("\n") / max(len(doc.token_ids), 1) > f.new_line_ratio:
        return "list_ratio"
    return None

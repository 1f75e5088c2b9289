"""BPE merges learnt on top of a parent tokenizer's, for `tokenizer.extend` (tokens/extension.py).

The mix is pre-tokenized with the parent's own pre-tokenizer and cut into the parent's tokens; the most
frequent adjacent pair is merged, again and again, until the requested number of new tokens: classic BPE
training, continued from the parent's vocabulary so that every existing id keeps its meaning.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict

from tokenizers import Tokenizer

ENCODE_CHUNK = 2_000  # texts per encode_batch call: bounds the encodings held at once


def _word_counts(backend: Tokenizer, texts: list[str]) -> Counter[tuple[int, ...]]:
    """How often each word (the parent's pre-tokenization) occurs, keyed by the parent's ids for it."""
    counts: Counter[tuple[int, ...]] = Counter()
    for start in range(0, len(texts), ENCODE_CHUNK):
        for enc in backend.encode_batch(texts[start : start + ENCODE_CHUNK], add_special_tokens=False):
            for word, group in itertools.groupby(zip(enc.word_ids, enc.ids), key=lambda pair: pair[0]):
                ids = tuple(i for _, i in group)
                if word is not None and len(ids) > 1:  # a one-token word has no pair to merge
                    counts[ids] += 1
    return counts


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(
    backend: Tokenizer,
    texts: list[str],
    count: int,
    min_frequency: int,
    first_id: int,
    id_to_token: dict[int, str],
    existing: set[str],
    excluded_ids: set[int],
) -> list[tuple[str, str, int, str]]:
    """Up to `count` merges `(left token, right token, new id, new token)` continuing the parent's BPE on `texts`.

    Standard BPE training on word counts, started from the parent's segmentation instead of characters, with
    incremental pair counts; a pair whose string the parent already has (or that an earlier new merge made)
    is skipped, so every new token is new and has exactly one merge. Ties go to the smaller ids.
    """
    counts = _word_counts(backend, texts)
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_count[pair] += freq[wi]
            where[pair].add(wi)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    strings = dict(id_to_token)
    taken = set(existing)
    merges: list[tuple[str, str, int, str]] = []
    while heap and len(merges) < count:
        negative, pair = heapq.heappop(heap)
        current = pair_count.get(pair, 0)
        if current != -negative:  # stale entry: the pair's count changed since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < min_frequency:
            break
        a, b = pair
        token = strings[a] + strings[b]
        if a in excluded_ids or b in excluded_ids or token in taken:
            pair_count[pair] = 0  # never a candidate again (a later count change re-pushes it: checked again)
            continue
        new = first_id + len(merges)
        strings[new] = token
        taken.add(token)
        merges.append((strings[a], strings[b], new, token))
        touched: set[tuple[int, int]] = set()
        for wi in where.pop(pair):
            word = words[wi]
            merged = _merge_word(word, a, b, new)
            for old in zip(word, word[1:]):
                pair_count[old] -= freq[wi]
                touched.add(old)
            for fresh in zip(merged, merged[1:]):
                pair_count[fresh] += freq[wi]
                where[fresh].add(wi)
                touched.add(fresh)
            words[wi] = merged
        pair_count.pop(pair, None)
        for other in touched:
            c = pair_count.get(other, 0)
            if c > 0 and other != pair:
                heapq.heappush(heap, (-c, other))
    return merges

"""Decontamination: drop training documents that share a word n-gram with an evaluation item.

The index holds hashes of every `ngram`-word window (default 13, as in GPT-3 / the Pile) of each
eval item's text; items shorter than `ngram` words contribute their whole word sequence (if at least
`MIN_SHORT` words), so short cloze items are still caught. A document is contaminated when any of
its windows of those lengths is in the index; hits are counted per task.

Almost every document is clean, so a document first goes through a bit filter (two bits per key, ~512 bits per
key) of the `ngram`-word keys and of the first `MIN_SHORT` words of every short item: a document holding a
short item holds its first `MIN_SHORT` words, so only its windows of two lengths are checked there, and one
with no window in the filter is clean without the binary searches of the exact lookup.
"""

from __future__ import annotations

import math

import numpy as np

from pretrain.data.dedup import WindowHashes, window_hashes, word_hashes, words

MIN_SHORT = 8
FILTER_BITS_PER_KEY = 512  # a document checks ~2 x its words windows: each must pass rarely (~1e-5)
FILTER_MAX_LOG2 = 28  # 32 MB of filter at most: past ~4M keys the filter passes more documents to the lookup


def _filter_probes(keys: np.ndarray, log2: int) -> tuple[np.ndarray, np.ndarray]:
    """Two bit positions per key: its top and its bottom `log2` bits (the keys are uniform hashes)."""
    return keys >> np.uint64(64 - log2), keys & np.uint64((1 << log2) - 1)


class ContaminationIndex:
    """Window hashes of the eval items, as sorted arrays: a document's windows are looked up all at once."""

    def __init__(self, task_texts: dict[str, list[str]], ngram: int):
        self.ngram = ngram
        self.tasks = sorted(task_texts)
        first_task: dict[
            int, dict[int, int]
        ] = {}  # window length -> hash -> first task (sorted order) having it
        prefixes: set[int] = set()  # hashes of the first MIN_SHORT words of the short items
        for t, task in enumerate(self.tasks):
            for text in task_texts[task]:
                tokens = words(text)
                n = ngram if len(tokens) >= ngram else (len(tokens) if len(tokens) >= MIN_SHORT else 0)
                if n:
                    index = first_task.setdefault(n, {})
                    hashes = word_hashes(tokens)
                    for h in window_hashes(hashes, n).tolist():
                        index.setdefault(h, t)
                    if n < ngram:
                        prefixes.add(int(window_hashes(hashes[:MIN_SHORT], MIN_SHORT)[0]))
        self.lengths = sorted(first_task)
        # the filter's window lengths: ngram, and MIN_SHORT for the short items' prefixes
        self._filter_lengths = sorted({ngram} & set(first_task) | ({MIN_SHORT} if prefixes else set()))
        every = np.fromiter([*first_task.get(ngram, {}), *prefixes], dtype=np.uint64)
        self._log2 = min(
            max(16, math.ceil(math.log2(max(len(every), 1) * FILTER_BITS_PER_KEY))), FILTER_MAX_LOG2
        )
        self._filter = np.zeros(1 << (self._log2 - 3), dtype=np.uint8)
        for probe in _filter_probes(every, self._log2):
            np.bitwise_or.at(
                self._filter, probe >> np.uint64(3), np.left_shift(1, probe & np.uint64(7)).astype(np.uint8)
            )
        self._keys, self._task = {}, {}
        for n, index in first_task.items():
            keys = np.fromiter(index, dtype=np.uint64, count=len(index))
            order = np.argsort(keys)
            self._keys[n] = keys[order]
            self._task[n] = np.fromiter(index.values(), dtype=np.int32, count=len(index))[order]

    def __bool__(self) -> bool:
        return bool(self.lengths)

    def match(
        self, text: str, tokens: list[str] | None = None, hashes: np.ndarray | None = None
    ) -> str | None:
        """Name of the task whose item the text overlaps, or None (`tokens`/`hashes`: precomputed words)."""
        if not self.lengths:
            return None
        tokens = words(text) if tokens is None else tokens
        hashes = word_hashes(tokens) if hashes is None else hashes
        all_windows = WindowHashes(hashes)
        probes = np.concatenate([all_windows(n) for n in self._filter_lengths])
        if not self.filter_hits(probes).any():  # clean: most documents
            return None
        for n in self.lengths:
            windows = all_windows(n)
            if not len(windows):
                continue
            keys = self._keys[n]
            pos = np.minimum(np.searchsorted(keys, windows), len(keys) - 1)
            found = np.flatnonzero(keys[pos] == windows)
            if len(found):
                return self.tasks[int(self._task[n][pos[found[0]]])]
        return None

    def filter_hits(self, windows: np.ndarray) -> np.ndarray:
        """Per window: both its filter bits are set (necessary for it to be an `ngram` key or the first
        MIN_SHORT words of a short item)."""
        hit = np.ones(len(windows), dtype=np.bool_)
        for probe in _filter_probes(windows, self._log2):
            bits = self._filter[probe >> np.uint64(3)] >> (probe & np.uint64(7))
            hit &= (bits & np.uint64(1)).astype(np.bool_)
        return hit

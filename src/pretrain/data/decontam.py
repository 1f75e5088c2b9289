"""Decontamination: drop training documents that share a word n-gram with an evaluation item.

The index holds hashes of every `ngram`-word window (default 13, as in GPT-3 / the Pile) of each
eval item's text; items shorter than `ngram` words contribute their whole word sequence (if at least
`MIN_SHORT` words), so short cloze items are still caught. A document is contaminated when any of
its windows of those lengths is in the index; hits are counted per task.
"""

from __future__ import annotations

import numpy as np

from pretrain.data.dedup import WindowHashes, window_hashes, word_hashes, words

MIN_SHORT = 8


class ContaminationIndex:
    """Window hashes of the eval items, as sorted arrays: a document's windows are looked up all at once."""

    def __init__(self, task_texts: dict[str, list[str]], ngram: int):
        self.ngram = ngram
        self.tasks = sorted(task_texts)
        first_task: dict[
            int, dict[int, int]
        ] = {}  # window length -> hash -> first task (sorted order) having it
        for t, task in enumerate(self.tasks):
            for text in task_texts[task]:
                tokens = words(text)
                n = ngram if len(tokens) >= ngram else (len(tokens) if len(tokens) >= MIN_SHORT else 0)
                if n:
                    index = first_task.setdefault(n, {})
                    for h in window_hashes(word_hashes(tokens), n).tolist():
                        index.setdefault(h, t)
        self.lengths = sorted(first_task)
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

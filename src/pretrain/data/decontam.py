"""Decontamination: drop training documents that share a word n-gram with an evaluation item.

The index holds hashes of every `ngram`-word window (default 13, as in GPT-3 / the Pile) of each
eval item's text; items shorter than `ngram` words contribute their whole word sequence (if at least
`MIN_SHORT` words), so short cloze items are still caught. A document is contaminated when any of
its windows of those lengths is in the index; hits are counted per task.
"""

from __future__ import annotations

import xxhash

from pretrain.data.dedup import words

MIN_SHORT = 8


class ContaminationIndex:
    def __init__(self, task_texts: dict[str, list[str]], ngram: int):
        self.ngram = ngram
        self.lengths: set[int] = set()
        self.hashes: dict[int, str] = {}  # ngram hash -> first task that has it
        for task, texts in sorted(task_texts.items()):
            for text in texts:
                tokens = words(text)
                if len(tokens) >= ngram:
                    self._add(task, tokens, ngram)
                elif len(tokens) >= MIN_SHORT:
                    self._add(task, tokens, len(tokens))

    def _add(self, task: str, tokens: list[str], n: int) -> None:
        self.lengths.add(n)
        for i in range(len(tokens) - n + 1):
            self.hashes.setdefault(xxhash.xxh64_intdigest(" ".join(tokens[i : i + n]).encode()), task)

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def match(self, text: str) -> str | None:
        """Name of the task whose item the text overlaps, or None."""
        if not self.hashes:
            return None
        tokens = words(text)
        for n in sorted(self.lengths):
            for i in range(len(tokens) - n + 1):
                task = self.hashes.get(xxhash.xxh64_intdigest(" ".join(tokens[i : i + n]).encode()))
                if task:
                    return task
        return None

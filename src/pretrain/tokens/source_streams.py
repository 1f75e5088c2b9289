"""What a staged mix draws from: one window stream per source, and the quota rule that keeps each source at
its share.

Each source's train shards form its own token stream cut into windows of T+1 tokens; a source's windows come
in a permutation drawn from (seed, source, epoch), and a source that runs out starts its next epoch with a new
permutation. `quota_counts` gives each source its windows of a global batch by a cumulative largest-remainder
rule (tokens/stages.py describes the whole draw).
"""

from __future__ import annotations

import zlib

import numpy as np

from pretrain.tokens.windows import read_tokens


class SourceStream:
    """One source's train windows: a token stream, its window count, and its epoch's permutation."""

    def __init__(self, name: str, shards: list[np.memmap], starts: np.ndarray, seq_len: int, seed: int):
        self.name, self._shards, self._starts, self.seq_len = name, shards, starts, seq_len
        self.n_windows = max(0, (int(starts[-1]) - 1) // seq_len)
        self._key = zlib.crc32(name.encode("utf-8"))  # stable across processes (str hash() is salted)
        self._seed = seed
        self._perm: np.ndarray | None = None
        self._perm_epoch = -1

    def order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            rng = np.random.default_rng([self._seed, self._key, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.n_windows), epoch
        return self._perm

    def take(self, epoch: int, position: int, count: int) -> tuple[np.ndarray, int, int]:
        """`count` window indices from (epoch, position) on, crossing into new epochs as needed."""
        taken = []
        while count:
            n = min(count, self.n_windows - position)
            taken.append(self.order(epoch)[position : position + n])
            position += n
            count -= n
            if position == self.n_windows:
                epoch, position = epoch + 1, 0
        windows = np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)
        return windows, epoch, position

    def window_tokens(self, window: int) -> np.ndarray:
        return read_tokens(self._shards, self._starts, window * self.seq_len, self.seq_len + 1)


def quota_counts(weights: np.ndarray, drawn: np.ndarray, n: int) -> np.ndarray:
    """How many of the next `n` windows each source gets: one at a time to the source furthest below its
    target (`weights` x windows drawn so far, including this step's), ties to the earlier source."""
    counts = np.zeros(len(weights), dtype=np.int64)
    done = int(drawn.sum())
    for k in range(1, n + 1):
        deficit = weights * (done + k) - (drawn + counts)
        deficit[weights <= 0] = -np.inf
        counts[int(np.argmax(deficit))] += 1
    return counts

"""What a staged mix draws from: one window stream per source, and the quota rule that keeps each source at
its share.

Each source's train shards form its own token stream cut into windows of T+1 tokens; a source's windows come
in a permutation drawn from (seed, source, epoch) — (seed, T, source, epoch) for the windows of a context
extension stage's length T — and a source that runs out starts its next epoch with a new permutation. `quota_counts` gives each source its windows of a global batch by a cumulative largest-remainder
rule (tokens/stages.py describes the whole draw).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import TokenManifest
from pretrain.tokens.windows import open_shard_list, read_tokens


class SourceStream:
    """One source's train windows: a token stream, its window count, and its epoch's permutation."""

    def __init__(
        self,
        name: str,
        shards: list[np.memmap],
        starts: np.ndarray,
        seq_len: int,
        seed: int,
        extended: bool = False,
    ):
        self.name, self._shards, self._starts, self.seq_len = name, shards, starts, seq_len
        self.n_windows = max(0, (int(starts[-1]) - 1) // seq_len)
        self._key = zlib.crc32(name.encode("utf-8"))  # stable across processes (str hash() is salted)
        # a context-extension length draws its own permutations; the base length keeps the historical seed
        self._seed = [seed, seq_len] if extended else [seed]
        self._perm: np.ndarray | None = None
        self._perm_epoch = -1

    def order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            rng = np.random.default_rng([*self._seed, self._key, epoch])
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


class SourceWindows:
    """Every source's windows of one length: the streams, where each source stands (epoch, position), and
    global window ids (source offset, sources in manifest order, + the source's window index)."""

    def __init__(self, streams: list[SourceStream]):
        self.streams = streams
        self.offsets = np.concatenate([[0], np.cumsum([s.n_windows for s in streams])]).astype(np.int64)
        self.epochs = np.zeros(len(streams), dtype=np.int64)
        self.positions = np.zeros(len(streams), dtype=np.int64)

    def take(self, counts: np.ndarray) -> np.ndarray:
        """Global ids of `counts[i]` windows of each source i, from where each stands; advances them."""
        ids = []
        for i, count in enumerate(counts):
            if count:
                windows, self.epochs[i], self.positions[i] = self.streams[i].take(
                    int(self.epochs[i]), int(self.positions[i]), int(count)
                )
                ids.append(windows + self.offsets[i])
        return np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)

    def source_of(self, global_id: int) -> tuple[int, int]:
        """(source index, the source's window index) of a global window id."""
        i = int(np.searchsorted(self.offsets, global_id, side="right") - 1)
        return i, int(global_id - self.offsets[i])

    def tokens(self, global_id: int) -> np.ndarray:
        i, window = self.source_of(global_id)
        return self.streams[i].window_tokens(window)

    def reset(self) -> None:
        self.epochs[:], self.positions[:] = 0, 0

    def state_dict(self) -> dict:
        return {
            s.name: {"epoch": int(e), "position": int(p), "n_windows": s.n_windows}
            for s, e, p in zip(self.streams, self.epochs, self.positions)
        }

    def n_windows(self) -> dict[str, int]:
        return {s.name: s.n_windows for s in self.streams}

    def load_state_dict(self, saved: dict) -> None:
        for i, s in enumerate(self.streams):
            self.epochs[i], self.positions[i] = int(saved[s.name]["epoch"]), int(saved[s.name]["position"])


def open_source_streams(
    tokens_dir: Path, manifest: TokenManifest, stages: list, seq_lens: list[int], seed: int, base: int
) -> dict[int, list[SourceStream]]:
    """Every source's train stream cut at each length of `seq_lens` (`base`: the loader's own length, whose
    permutations keep their historical seed); refuses tokens without per-source shards, a stage source that was
    not packed, and a source too short for one window of a stage that reads it."""
    where = TokenManifest.path(tokens_dir)
    if not manifest.sources or any(s.shards is None for s in manifest.sources.values()):
        raise DataError(
            f"{where}: train.data_stages needs per-source token shards (`sources.<name>.shards`), and this "
            "tokens/ folder has none; re-run `pretrain pack RECIPE` to re-pack it, or remove train.data_stages"
        )
    wanted = {name for stage in stages for name in stage.weights}
    missing = sorted(wanted - set(manifest.sources))
    if missing:
        raise DataError(
            f"{where}: train.data_stages names source(s) {', '.join(missing)} that the packed tokens do not "
            f"have (packed: {', '.join(manifest.sources)}); re-run `pretrain pack RECIPE`"
        )
    streams: dict[int, list[SourceStream]] = {length: [] for length in seq_lens}
    for name, counts in manifest.sources.items():
        shards, starts = open_shard_list(tokens_dir, manifest, counts.shards.get("train", []))
        for length in seq_lens:
            stream = SourceStream(name, shards, starts, length, seed, extended=length != base)
            if stream.n_windows == 0 and any(name in st.weights and st.seq_len == length for st in stages):
                raise DataError(
                    f"{where}: source {name!r} has fewer than {length + 1} train tokens, too few for one window "
                    f"of seq_len {length}; drop it from its train.data_stages or lower the seq_len"
                )
            streams[length].append(stream)
    return streams


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

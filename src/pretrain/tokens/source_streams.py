"""What a staged mix draws from: one window stream per source, and the quota rule that keeps each source at
its share.

Each source's train shards form its own token stream cut into windows of T+1 tokens; a source's windows come
in a permutation drawn from (seed, source, epoch) — (seed, T, source, epoch) for the windows of a context
extension stage's length T — and a source that runs out starts its next epoch with a new permutation.
`quota_counts` gives each source its windows of a global batch by a cumulative largest-remainder
rule (tokens/stages.py describes the whole draw).

Text held for a longer stage (`split_text`): when stages read a source at more than one length, the source's
stream is cut into blocks of the longest length and every block is given to one length, in proportion to the
tokens the stages at that length read from the source; each length reads only its own blocks. A long stage
then trains on text the stages before it never showed (as the same run without it would, in its last
steps), where windows drawn afresh from the whole stream would repeat text the short stage had read: on
tiny-long about 3/4 of the long stage's tokens, which cost it 2% of held-out loss at every position
(recipes/tiny-long/README.md).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import TokenManifest
from pretrain.tokens.windows import open_shard_list, read_tokens


def source_key(name: str) -> int:
    """A source's seed component: stable across processes (str hash() is salted)."""
    return zlib.crc32(name.encode("utf-8"))


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
        window_starts: np.ndarray | None = None,
    ):
        self.name, self._shards, self._starts, self.seq_len = name, shards, starts, seq_len
        # where each window starts in the stream: every seq_len tokens, or only inside this length's blocks
        if window_starts is None:
            window_starts = np.arange(max(0, (int(starts[-1]) - 1) // seq_len), dtype=np.int64) * seq_len
        self._window_starts = window_starts
        self.n_windows = len(window_starts)
        self._key = source_key(name)
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

    def token_offset(self, window: int) -> int:
        """Where window `window` starts in the source's stream, in tokens."""
        return int(self._window_starts[window])

    def window_tokens(self, window: int) -> np.ndarray:
        return read_tokens(self._shards, self._starts, self.token_offset(window), self.seq_len + 1)


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


def split_text(total_tokens: int, reads: dict[int, float], seed: int, key: int) -> dict[int, np.ndarray]:
    """Window start offsets per length for a stream of `total_tokens`, each length reading only its own blocks.

    `reads`: tokens the stages at each length read from this source (a length read by no stage gets no windows;
    a source read at one length only is all that length's). Blocks are `max(reads)` tokens long, shuffled by
    (seed, source key) and dealt out in proportion to `reads` (at least one to a length that reads the source);
    the base length, the shortest, keeps the remainder and the tail after the last whole block. A block of
    length B holds B // L windows of length L; each window's label token may be the next block's first."""
    lengths = sorted(length for length, tokens in reads.items() if tokens > 0)
    out = {length: np.empty(0, dtype=np.int64) for length in reads}
    if len(lengths) < 2:  # one length (or none) reads the source: all of it
        return {**out, **{n: np.arange(max(0, (total_tokens - 1) // n), dtype=np.int64) * n for n in lengths}}
    block = lengths[-1]
    n_blocks = max(0, (total_tokens - 1) // block)
    order = np.random.default_rng([seed, key, block]).permutation(n_blocks)
    total_reads = sum(reads[length] for length in lengths)
    owner = np.full(n_blocks, lengths[0], dtype=np.int64)  # the base length keeps what is not dealt out
    dealt = 0
    for length in lengths[1:]:
        count = max(1, round(n_blocks * reads[length] / total_reads)) if n_blocks else 0
        owner[order[dealt : dealt + count]] = length
        dealt += count
    for length in lengths:
        blocks = np.flatnonzero(owner == length) * block
        inside = np.arange(block // length, dtype=np.int64) * length
        out[length] = (blocks[:, None] + inside[None, :]).ravel()
    tail = np.arange(n_blocks * block, total_tokens - lengths[0], lengths[0], dtype=np.int64)
    out[lengths[0]] = np.concatenate([out[lengths[0]], tail])
    return out


def open_source_streams(
    tokens_dir: Path,
    manifest: TokenManifest,
    stages: list,
    seq_lens: list[int],
    seed: int,
    base: int,
    reads: dict[str, dict[int, float]] | None = None,
) -> dict[int, list[SourceStream]]:
    """Every source's train stream cut at each length of `seq_lens` (`base`: the loader's own length, whose
    permutations keep their historical seed); with `reads` (tokens read per source per length) a source read at
    two or more lengths is split between them (`split_text`). Refuses tokens without per-source shards, a stage
    source that was not packed, and a source too short for one window of a stage that reads it."""
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
        source_reads = {length: (reads or {}).get(name, {}).get(length, 0.0) for length in seq_lens}
        split = split_text(int(starts[-1]), source_reads, seed, source_key(name)) if reads is not None else {}
        for length in seq_lens:
            stream = SourceStream(name, shards, starts, length, seed, length != base, split.get(length))
            if stream.n_windows == 0 and any(name in st.weights and st.seq_len == length for st in stages):
                raise DataError(
                    f"{where}: source {name!r} has too few train tokens for one window of seq_len {length} "
                    f"({int(starts[-1])} tokens, split between the stage lengths that read it); drop it from "
                    "its train.data_stages or lower the seq_len"
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

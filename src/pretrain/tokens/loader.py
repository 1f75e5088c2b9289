"""The training data loader: fixed-length windows from packed shards, sharded by rank, exactly resumable.

    loader = TokenLoader(recipe.layout.tokens, "train", seq_len=2048, batch_size=8, rank=r, world_size=w, seed=s)
    batch = next(loader)          # {"input_ids": [B, T], "labels": [B, T] (+ "position_ids")}
    state = loader.state_dict()   # {"epoch", "position", ...}: restoring it is O(1), nothing is replayed

The split is one virtual token stream (shards concatenated). Window k covers tokens
[k*T, k*T + T] (T+1 tokens: inputs and shifted labels). The train split visits windows in a
permutation drawn from (seed, epoch); each optimizer micro-step consumes `world_size * batch_size`
consecutive entries of that permutation and rank r takes its slice, so ranks never overlap and the
global order does not depend on how far each rank has got. The val split is read in order, once.

Elastic resume: an optimizer step always consumes the same `windows_per_step` (the global batch)
entries of the permutation, however they are split into ranks and micro batches, and an epoch ends
after its last whole global batch. The saved position therefore means the same thing on any world
size: a checkpoint written by 2 ranks resumes on 1 (or 4) with exactly the windows not yet consumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import TokenManifest, TokenShard


class TokenLoader:
    def __init__(
        self,
        tokens_dir: Path,
        split: str,
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        document_positions: bool = False,
        expected_tokenizer_hash: str | None = None,
        windows_per_step: int | None = None,
    ):
        self.dir, self.split = Path(tokens_dir), split
        self.seq_len, self.batch_size, self.rank, self.world_size = seq_len, batch_size, rank, world_size
        self.seed, self.shuffle, self.document_positions = (
            seed,
            shuffle and split == "train",
            document_positions,
        )
        self.manifest = read_tokens_manifest(self.dir, expected_tokenizer_hash)
        self.eos_id = self.manifest.eos_id
        self._shards, self._starts = _open_shards(self.dir, self.manifest, split)
        self.total_tokens = int(self._starts[-1])
        self.n_windows = (self.total_tokens - 1) // seq_len
        self.step_windows = batch_size * world_size  # one micro step, all ranks
        # one optimizer step (micro steps x ranks x micro batch): the unit an epoch is cut in
        self.windows_per_step = windows_per_step or self.step_windows
        if self.windows_per_step % self.step_windows:
            raise DataError(
                f"{self.dir}: a global batch of {self.windows_per_step} sequences is not a multiple of "
                f"micro batch {batch_size} x {world_size} processes; change the batch or the number of processes"
            )
        if self.n_windows < self.windows_per_step:
            raise DataError(
                f"{self.dir}: the {split} split has {self.total_tokens:,} tokens, fewer than one global batch of "
                f"{self.windows_per_step} x {seq_len + 1}; add data or lower the batch / seq_len"
            )
        self.last_windows: np.ndarray | None = None  # window ids of the last batch (for data accounting)
        self.epoch, self.position = 0, 0
        self._perm: np.ndarray | None = None
        self._perm_epoch = -1

    # ------------------------------------------------------------------ geometry
    @property
    def batches_per_epoch(self) -> int:
        """Micro batches per epoch (each rank reads one per micro step)."""
        return self.usable_windows // self.step_windows

    @property
    def usable_windows(self) -> int:
        """Windows per epoch: whole global batches only (the rest of the permutation is dropped)."""
        return self.n_windows // self.windows_per_step * self.windows_per_step

    def _advance(self) -> int:
        """Start of this micro step's entries in the permutation, moving to the next epoch when needed."""
        if self.position + self.step_windows > self.usable_windows:
            self.epoch, self.position = self.epoch + 1, 0
        first = self.position
        self.position += self.step_windows
        return first

    def _order(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            if self.shuffle:
                self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_windows)
            else:
                self._perm = np.arange(self.n_windows)
            self._perm_epoch = self.epoch
        return self._perm

    # ------------------------------------------------------------------ reading
    def _tokens(self, start: int, length: int) -> np.ndarray:
        return read_tokens(self._shards, self._starts, start, length)

    def __iter__(self) -> TokenLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.split != "train" and self.position + self.step_windows > self.usable_windows:
            raise StopIteration
        first = self._advance() + self.rank * self.batch_size
        windows = self._order()[first : first + self.batch_size]
        self.last_windows = windows
        rows = np.stack([self._tokens(int(w) * self.seq_len, self.seq_len + 1) for w in windows])
        return window_batch(rows, self.eos_id if self.document_positions else None)

    def skip(self, n_batches: int) -> None:
        """Advance by `n_batches` micro steps without reading (used to skip a bad data window)."""
        for _ in range(n_batches):
            self._advance()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The global position (the same on every rank); `world_size` and `batch_size` are informative."""
        return {
            "split": self.split,
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_windows": self.n_windows,
            "windows_per_step": self.windows_per_step,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` stopped, on this loader's world size and micro batch.

        The data (`n_windows`), `seq_len`, `seed` and the global batch must be those of the saved run; ranks
        and micro batch may differ as long as the saved position falls on a micro step of this geometry
        (checkpoints are taken between optimizer steps, which always do).
        """
        if state.get("kind") == "staged":
            raise DataError(
                f"{self.dir}: the checkpoint's loader state is of a run with train.data_stages; resume it with "
                "the same train.data_stages"
            )
        saved_step = state.get("windows_per_step")
        if saved_step is None:  # written before elastic resume: only the same geometry is known to match
            same = (state.get("world_size"), state.get("batch_size")) == (self.world_size, self.batch_size)
            saved_step = self.windows_per_step if same else "unknown (an older checkpoint)"
        for key, saved in (
            ("seq_len", state.get("seq_len")),
            ("n_windows", state.get("n_windows")),
            ("seed", state.get("seed")),
            ("windows_per_step", saved_step),
        ):
            if saved != getattr(self, key):
                raise DataError(
                    f"{self.dir}: loader state was saved with {key}={saved}, now {getattr(self, key)}; "
                    "resume with the same data, seq_len, seed and global batch"
                )
        position = int(state["position"])
        if position % self.step_windows:
            raise DataError(
                f"{self.dir}: loader state stopped at position {position}, inside a micro step of "
                f"{self.step_windows} windows ({self.world_size} processes x micro batch {self.batch_size}); "
                "resume from a checkpoint (taken between optimizer steps)"
            )
        self.epoch, self.position = int(state["epoch"]), position


def window_batch(rows: np.ndarray, eos_id: int | None = None) -> dict[str, torch.Tensor]:
    """A micro batch from windows of T+1 tokens: inputs, labels shifted by one, and with `eos_id` the
    position ids that restart after each document end (document masking)."""
    batch = {
        "input_ids": torch.from_numpy(rows[:, :-1].copy()),
        "labels": torch.from_numpy(rows[:, 1:].copy()),
    }
    if eos_id is not None:
        batch["position_ids"] = torch.from_numpy(document_position_ids(rows[:, :-1], eos_id))
    return batch


def document_position_ids(rows: np.ndarray, eos_id: int) -> np.ndarray:
    """Positions that restart at 0 after every EOS, so attention can be kept inside documents."""
    idx = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
    starts = np.where(rows == eos_id, idx + 1, 0)
    starts = np.maximum.accumulate(
        np.concatenate([np.zeros((rows.shape[0], 1), dtype=np.int64), starts[:, :-1]], 1), 1
    )
    return (idx - starts).astype(np.int64)


def read_tokens_manifest(tokens_dir: Path, expected_tokenizer_hash: str | None = None) -> TokenManifest:
    """The manifest, refused when its shards were packed with a tokenizer other than the expected one."""
    manifest = TokenManifest.read(tokens_dir)
    got = manifest.tokenizer_hash
    if expected_tokenizer_hash and got and got != expected_tokenizer_hash:
        raise DataError(
            f"{TokenManifest.path(tokens_dir)}: shards were packed with another tokenizer (hash {got}, "
            f"expected {expected_tokenizer_hash}); re-run `pretrain pack RECIPE`"
        )
    return manifest


def read_tokens(shards: list[np.memmap], starts: np.ndarray, start: int, length: int) -> np.ndarray:
    """Tokens [start, start + length) of the stream formed by `shards` (`starts`: their cumulative offsets)."""
    out = np.empty(length, dtype=np.int64)
    i = int(np.searchsorted(starts, start, side="right") - 1)
    filled = 0
    while filled < length:
        offset = start + filled - int(starts[i])
        take = min(length - filled, len(shards[i]) - offset)
        out[filled : filled + take] = shards[i][offset : offset + take]
        filled += take
        i += 1
    return out


def _open_shards(tokens_dir: Path, manifest: TokenManifest, split: str) -> tuple[list[np.memmap], np.ndarray]:
    if split not in manifest.splits:
        raise DataError(f"{TokenManifest.path(tokens_dir)}: no {split!r} split")
    return open_shard_list(tokens_dir, manifest, manifest.splits[split].shards)


def open_shard_list(
    tokens_dir: Path, manifest: TokenManifest, listed: list[TokenShard]
) -> tuple[list[np.memmap], np.ndarray]:
    """Memory maps of `listed` shards (each checked against its manifest size) and their cumulative offsets."""
    dtype = np.dtype(manifest.dtype)
    shards, sizes = [], []
    for shard in listed:
        path = tokens_dir / shard.file
        if not path.exists():
            raise DataError(f"{path}: shard listed in the manifest is missing; re-run `pretrain pack RECIPE`")
        actual = path.stat().st_size
        if actual != shard.tokens * dtype.itemsize:
            raise DataError(
                f"{path}: {actual} bytes, the manifest says {shard.tokens} {dtype.name} tokens "
                f"({shard.tokens * dtype.itemsize} bytes) — truncated or corrupt; re-run `pretrain pack RECIPE`"
            )
        if shard.tokens:
            shards.append(np.memmap(path, dtype=dtype, mode="r"))
            sizes.append(shard.tokens)
    return shards, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

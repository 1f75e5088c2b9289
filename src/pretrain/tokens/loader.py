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

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import TokenShard
from pretrain.tokens.windows import check_ids, open_split, read_tokens, read_tokens_manifest, window_batch


class WindowLoader:
    """What training asks of its data, whichever loader gives it: micro batches of windows of this rank, a skip
    past bad data, the exact position between optimizer steps (`state_dict`), and, for a staged mix, the
    stage and the realised shares. `TokenLoader` (one packed stream) and `tokens.stages.StagedTokenLoader` (a
    staged mix of the sources) are the two; this base holds the geometry they share.

    `windows_per_step` is the global batch in windows (one optimizer step, all ranks and micro steps): a
    multiple of `batch_size x world_size`, and the unit an epoch is cut in.
    """

    def __init__(
        self,
        tokens_dir: Path,
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        document_positions: bool = False,
        expected_tokenizer_hash: str | None = None,
        windows_per_step: int | None = None,
    ):
        self.dir = Path(tokens_dir)
        self.seq_len, self.batch_size, self.rank, self.world_size = seq_len, batch_size, rank, world_size
        self.seed, self.document_positions = seed, document_positions
        self.manifest = read_tokens_manifest(self.dir, expected_tokenizer_hash)
        self.eos_id = self.manifest.eos_id
        self.step_windows = batch_size * world_size  # one micro step, all ranks
        self.windows_per_step = windows_per_step or self.step_windows
        if self.windows_per_step % self.step_windows:
            raise DataError(
                f"{self.dir}: a global batch of {self.windows_per_step} sequences is not a multiple of "
                f"micro batch {batch_size} x {world_size} processes; change the batch or the number of processes"
            )
        self.last_windows: np.ndarray | None = None  # window ids of the last batch (for data accounting)
        self.last_seq_len = seq_len  # the length of those windows (a context-extension stage's may differ)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def skip(self, n_batches: int) -> None:
        """Advance by `n_batches` micro steps without reading (used to skip a bad data window)."""
        raise NotImplementedError

    @property
    def accum_steps(self) -> int:
        """Micro batches per optimizer step on each rank (for the next optimizer step)."""
        return self.windows_per_step // self.step_windows

    def skip_steps(self, n_steps: int) -> None:
        """Advance by `n_steps` whole optimizer steps without reading (a rollback's data-skip window)."""
        self.skip(n_steps * self.accum_steps)

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    @property
    def stage(self) -> int | None:
        """The data stage of the next global batch (None: one packed stream, no stages)."""
        return None

    # ------------------------------------------------------------------ forensics (tokens/forensics.py)
    @property
    def data_step(self) -> int:
        """Global batches drawn so far (between optimizer steps: the index of the next one)."""
        raise NotImplementedError

    def last_step_windows(self) -> tuple[int, np.ndarray]:
        """(window length, global window ids) of the last whole global batch drawn, in the order ranks and
        micro steps read it (rank r of micro step m reads [m x world + r] x micro batch onwards)."""
        raise NotImplementedError

    def next_global_batch(self) -> tuple[int, np.ndarray]:
        """Draw the next global batch whole, without reading tokens: (window length, window ids)."""
        raise NotImplementedError

    def window_tokens(self, window: int, seq_len: int) -> np.ndarray:
        """The seq_len + 1 tokens of a global window id of that length."""
        raise NotImplementedError

    def window_source(self, window: int, seq_len: int) -> tuple[list[TokenShard], int]:
        """The shards of the stream a window comes from (as the manifest lists them) and its first token there."""
        raise NotImplementedError

    def realised_shares(self) -> list[dict] | None:
        """Per data stage, the requested and realised source shares (None: one packed stream)."""
        return None

    def start_at_step(self, step: int) -> None:
        """Draw from optimizer step `step` on with fresh sources (a branch of another run): staged mixes only."""
        raise DataError(
            f"{self.dir}: one packed stream cannot start at a step; a branch needs train.data_stages"
        )


class TokenLoader(WindowLoader):
    """One split of the packed tokens as one stream (see the module docstring)."""

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
        super().__init__(
            tokens_dir,
            seq_len,
            batch_size,
            rank,
            world_size,
            seed,
            document_positions,
            expected_tokenizer_hash,
            windows_per_step,
        )
        self.split = split
        self.shuffle = shuffle and split == "train"
        self._shards, self._starts = open_split(self.dir, self.manifest, split)
        self.total_tokens = int(self._starts[-1])
        self.n_windows = (self.total_tokens - 1) // seq_len
        if self.n_windows < self.windows_per_step:
            raise DataError(
                f"{self.dir}: the {split} split has {self.total_tokens:,} tokens, fewer than one global batch of "
                f"{self.windows_per_step} x {seq_len + 1}; add data or lower the batch / seq_len"
            )
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

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.split != "train" and self.position + self.step_windows > self.usable_windows:
            raise StopIteration
        first = self._advance() + self.rank * self.batch_size
        windows = self._order()[first : first + self.batch_size]
        self.last_windows = windows
        rows = np.stack([self._tokens(int(w) * self.seq_len, self.seq_len + 1) for w in windows])
        rows = check_ids(rows, windows, self.manifest.vocab_size, self.dir)
        return window_batch(rows, self.eos_id if self.document_positions else None)

    def skip(self, n_batches: int) -> None:
        """Advance by `n_batches` micro steps without reading (used to skip a bad data window)."""
        for _ in range(n_batches):
            self._advance()

    @property
    def data_step(self) -> int:
        return (self.epoch * self.usable_windows + self.position) // self.windows_per_step

    def last_step_windows(self) -> tuple[int, np.ndarray]:
        return self.seq_len, self._order()[self.position - self.windows_per_step : self.position]

    def next_global_batch(self) -> tuple[int, np.ndarray]:
        self.skip_steps(1)
        return self.last_step_windows()

    def seek_step(self, step: int) -> None:
        """Stand before global batch `step` (0-based): O(1), the position is arithmetic."""
        per_epoch = self.usable_windows // self.windows_per_step
        self.epoch, self.position = step // per_epoch, step % per_epoch * self.windows_per_step

    def window_tokens(self, window: int, seq_len: int) -> np.ndarray:
        return self._tokens(int(window) * seq_len, seq_len + 1)

    def window_source(self, window: int, seq_len: int) -> tuple[list[TokenShard], int]:
        return self.manifest.splits[self.split].shards, int(window) * seq_len

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

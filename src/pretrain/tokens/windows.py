"""Windows of the packed token stream as training reads them: the tokens of a window, the shards they come
from, and the micro batch they make.

A window is T+1 consecutive tokens (inputs and the labels shifted by one); its tokens may span shards. Both
loaders (tokens/loader.py, tokens/stages.py) read through these functions; the shard files are the format
tokens/shards.py writes and the manifest (tokens/manifest.py) lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.manifest import TokenManifest, TokenShard


def check_ids(rows: np.ndarray, windows: np.ndarray, vocab_size: int, tokens_dir: Path) -> np.ndarray:
    """`rows` (one per window), after checking that every id is in the vocabulary: a shard overwritten or
    damaged in place keeps its size (the manifest's only check when it is opened), and an id past the
    embedding table would end training with an IndexError deep in the model."""
    top = int(rows.max()) if rows.size else 0
    if top >= vocab_size:
        window = int(windows[int(np.argmax(rows.max(axis=1)))])
        raise DataError(
            f"{tokens_dir}: window {window} holds token id {top}, outside the tokenizer's {vocab_size} ids: the "
            "shards are damaged or were packed with another tokenizer; re-run `pretrain pack RECIPE --force`"
        )
    return rows


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


def open_split(tokens_dir: Path, manifest: TokenManifest, split: str) -> tuple[list[np.memmap], np.ndarray]:
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

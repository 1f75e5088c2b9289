"""Token shards on disk: raw little-endian token ids with a document index beside each, as `pack` writes them.

    <source>/{train,val}-FFFFF-NNN.bin      uint16 (vocab <= 65,535) or uint32 token ids
    <source>/{train,val}-FFFFF-NNN.idx.npy  int64 start offset of every document inside its shard
    <source>/{train,val}-FFFFF-NNN.ids.txt  each document's id in the mix, one per line (when the packer had them)

A shard holds at most `SHARD_TOKENS` tokens; the manifest (tokens/manifest.py) lists them. The loaders read
them back through tokens/loader.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pretrain.tokens.manifest import TokenManifest, TokenShard, TokenSplit

SHARD_TOKENS = 1 << 27  # 128M tokens per shard: 256 MB as uint16


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65_535 else np.dtype(np.uint32)


class ShardWriter:
    """Append documents to numbered shards `<prefix>-NNNNN`, recording document offsets."""

    def __init__(self, out: Path, prefix: str, dtype: np.dtype):
        self.out, self.prefix, self.dtype = Path(out), prefix, dtype
        self.shards: list[TokenShard] = []
        self._fh, self._offsets, self._n, self._doc_ids = None, [], 0, []

    def add(self, ids, doc_id: str | None = None) -> None:
        """Append one document's token ids (and its id in the mix, when known)."""
        if self._fh is None or self._n >= SHARD_TOKENS:
            self._roll()
        self._offsets.append(self._n)
        if doc_id is not None:
            self._doc_ids.append(doc_id.replace("\n", " "))
        self._fh.write(np.asarray(ids, dtype=self.dtype).tobytes())
        self._n += len(ids)

    def _roll(self) -> None:
        self._finish()
        name = f"{self.prefix}-{len(self.shards):05d}"
        self.shards.append(TokenShard(file=f"{name}.bin", index=f"{name}.idx.npy"))
        (self.out / name).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.out / f"{name}.bin", "wb")
        self._offsets, self._n, self._doc_ids = [], 0, []

    def _finish(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        shard = self.shards[-1]
        np.save(self.out / shard.index, np.asarray(self._offsets, dtype=np.int64))
        shard.tokens, shard.docs = self._n, len(self._offsets)
        if self._doc_ids and len(self._doc_ids) == len(self._offsets):
            shard.ids = shard.file.removesuffix(".bin") + ".ids.txt"
            (self.out / shard.ids).write_text("\n".join(self._doc_ids) + "\n", encoding="utf-8")
        self._fh = None

    def close(self, text_bytes: int | None = None, empty_shard: bool = True) -> TokenSplit:
        """Finish the last shard (`empty_shard`: write one even when nothing was added); `text_bytes`: the
        split's UTF-8 size, for bits per byte."""
        if not self.shards and empty_shard:
            self._roll()
        self._finish()
        return TokenSplit(
            shards=self.shards,
            tokens=sum(s.tokens for s in self.shards),
            docs=sum(s.docs for s in self.shards),
            bytes=text_bytes,
        )


def write_packed(
    out_dir: Path,
    train_docs: Iterable[list[int]],
    val_docs: Iterable[list[int]],
    *,
    vocab_size: int,
    eos_id: int,
    bos_id: int | None = None,
    tokenizer_hash: str | None = None,
) -> TokenManifest:
    """Write token documents (each already ending in EOS) as a tokens folder; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for(vocab_size)
    splits = {}
    for split, docs in (("train", train_docs), ("val", val_docs)):
        writer = ShardWriter(out_dir, split, dtype)
        for ids in docs:
            writer.add(ids)
        splits[split] = writer.close()
    manifest = TokenManifest(
        dtype=dtype.name,
        vocab_size=vocab_size,
        eos_id=eos_id,
        bos_id=bos_id,
        splits=splits,
        tokenizer_hash=tokenizer_hash,
    )
    manifest.write(out_dir)
    return manifest

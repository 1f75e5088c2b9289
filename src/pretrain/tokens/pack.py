"""`pretrain pack RECIPE`: tokenize the mix into packed token shards with a train/val split.

    pretrain pack recipes/tiny/config.yaml               # -> <output_dir>/tokens/

Layout of `tokens/`:
    manifest.json              dtype, vocab/eos/bos ids, tokenizer hash, per split shard list, per source
                               counts (the format: manifest.py)
    {train,val}-NNNNN.bin      raw little-endian uint16 (vocab <= 65,535) or uint32 token ids
    {train,val}-NNNNN.idx.npy  int64 start offset of every document inside its shard
    val_docs.jsonl             the val split's documents as text (for held-out bits-per-byte in lm-eval)

Every document is `[BOS] tokens EOS` (BOS when the tokenizer adds one), so EOS separates documents.
The split is by document: a hash of (seed, document id) decides, so upsampled copies of a document
land in the same split and val never shares a document with train. Encoding runs in `data.workers`
processes — with tiktoken when it reproduces the tokenizer exactly (fast_encode.py), else HF `tokenizers`;
`tokenizer.encoder` can force either — and the output bytes depend only on the inputs (deterministic).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pretrain.config import Recipe
from pretrain.core.errors import DataError, RecipeError
from pretrain.core.progress import get_logger, progress
from pretrain.data.mixio import iter_documents
from pretrain.tokens.fast_encode import FastEncoder, tiktoken_encoding
from pretrain.tokens.manifest import SourceTokens, TokenManifest, TokenShard, TokenSplit
from pretrain.tokens.tokenizer import load_tokenizer, tokenizer_hash

log = get_logger("pretrain.pack")
SHARD_TOKENS = 1 << 27  # 128M tokens per shard: 256 MB as uint16
CHUNK_DOCS = 256
CHUNK_BYTES = 1 << 20
SAMPLE_CHECK_CHARS = 1 << 20  # the encoders must agree on this much of the mix before tiktoken is used
_WORKER: dict = {}


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65_535 else np.dtype(np.uint32)


def is_val(doc_id: str, seed: int, fraction: float) -> bool:
    base = doc_id.split("#rep", 1)[0]
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{base}".encode(), digest_size=8).digest(), "little")
    return h / 2**64 < fraction


class ShardWriter:
    """Append documents to numbered shards of one split, recording document offsets."""

    def __init__(self, out: Path, split: str, dtype: np.dtype):
        self.out, self.split, self.dtype = Path(out), split, dtype
        self.shards: list[TokenShard] = []
        self._fh, self._offsets, self._n = None, [], 0

    def add(self, ids: list[int]) -> None:
        if self._fh is None or self._n >= SHARD_TOKENS:
            self._roll()
        self._offsets.append(self._n)
        self._fh.write(np.asarray(ids, dtype=self.dtype).tobytes())
        self._n += len(ids)

    def _roll(self) -> None:
        self._finish()
        name = f"{self.split}-{len(self.shards):05d}"
        self.shards.append(TokenShard(file=f"{name}.bin", index=f"{name}.idx.npy"))
        self._fh = open(self.out / f"{name}.bin", "wb")
        self._offsets, self._n = [], 0

    def _finish(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        shard = self.shards[-1]
        np.save(self.out / shard.index, np.asarray(self._offsets, dtype=np.int64))
        shard.tokens, shard.docs = self._n, len(self._offsets)
        self._fh = None

    def close(self, text_bytes: int | None = None) -> TokenSplit:
        """Finish the last shard; `text_bytes`: the split's UTF-8 size, for bits per byte."""
        if not self.shards:
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


def _init(tokenizer_dir: str, seed: int = 0, val_fraction: float = 0.0, use_tiktoken: bool = False) -> None:
    tok = load_tokenizer(Path(tokenizer_dir))
    _WORKER["dtype"], _WORKER["seed"], _WORKER["val_fraction"] = dtype_for(len(tok)), seed, val_fraction
    backend = tok.backend_tokenizer
    _WORKER["encoder"] = FastEncoder(backend, tiktoken_encoding(backend) if use_tiktoken else None)
    _WORKER["bos"], _WORKER["eos"] = tok.bos_token_id, tok.eos_token_id
    _WORKER["add_bos"] = (
        bool(tok("a")["input_ids"][:1] == [tok.bos_token_id]) if tok.bos_token_id is not None else False
    )


def _encode(chunk: list[dict]) -> list[tuple[dict, np.ndarray]]:
    """Encode in the worker and return compact arrays: pickling Python int lists back costs more than encoding."""
    encs = _WORKER["encoder"].encode_batch([r["text"] for r in chunk])
    dtype, bos, eos, add_bos = _WORKER["dtype"], _WORKER["bos"], _WORKER["eos"], _WORKER["add_bos"]
    out = []
    for r, e in zip(chunk, encs):
        ids = np.empty(len(e) + 1 + int(add_bos), dtype=dtype)
        if add_bos:
            ids[0] = bos
        ids[int(add_bos) : -1] = e
        ids[-1] = eos
        meta = {"id": r["id"], "source": r["source"], "bytes": len(r["text"].encode("utf-8"))}
        if is_val(r["id"], _WORKER["seed"], _WORKER["val_fraction"]):
            meta["text"] = r["text"]  # val documents are also written out as text
        out.append((meta, ids))
    return out


def _chunks(records: Iterator[dict]) -> Iterator[list[dict]]:
    """At most CHUNK_DOCS documents or CHUNK_BYTES characters, so one huge book doesn't hold up a whole chunk."""
    chunk, size = [], 0
    for rec in records:
        chunk.append(rec)
        size += len(rec["text"])
        if len(chunk) >= CHUNK_DOCS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _choose_encoder(tok, mix: Path, requested: str) -> str:
    """The encoder to pack with: "tiktoken" or "tokenizers" (the ids are the same; only the speed differs).

    `requested` is `tokenizer.encoder`: "auto" takes tiktoken when the tokenizer converts exactly and both
    encoders agree on a sample of the mix, else HF `tokenizers`; "tokenizers" forces HF (benches compare
    the two); "tiktoken" insists, and is a `RecipeError` when that check fails.
    """
    if requested == "tokenizers":
        return "tokenizers"
    backend = tok.backend_tokenizer
    encoding = tiktoken_encoding(backend)
    if encoding is None:
        if requested == "tiktoken":
            raise RecipeError(
                [
                    "tokenizer.encoder: tiktoken, but the tokenizer is not a plain byte-level BPE that "
                    "tiktoken reproduces (use auto or tokenizers)"
                ]
            )
        return "tokenizers"
    sample, size = [], 0
    for rec in iter_documents(mix):
        sample.append(rec["text"])
        size += len(rec["text"])
        if size >= SAMPLE_CHECK_CHARS:
            break
    if not FastEncoder(backend, encoding).agrees_with_backend(sample):
        if requested == "tiktoken":
            raise RecipeError(
                [
                    f"tokenizer.encoder: tiktoken, but tiktoken and tokenizers disagree on a sample of {mix} "
                    "(use auto or tokenizers)"
                ]
            )
        log.warning("tiktoken and tokenizers disagree on a sample of %s; packing with tokenizers", mix)
        return "tokenizers"
    return "tiktoken"


def fingerprint_inputs(recipe: Recipe) -> dict:
    """The split seed and fraction, and the mix shard size (document order within shards)."""
    return {
        "seed": recipe.seed,
        "val_fraction": recipe.data.val_fraction,
        "shard_docs": recipe.data.mixture.shard_docs,
    }


def pack(recipe: Recipe, out: Path) -> dict:
    """Stage function: tokenize the mix into `out`."""
    tok_dir = recipe.layout.tokenizer
    tok = load_tokenizer(tok_dir)
    dtype = dtype_for(len(tok))
    writers = {s: ShardWriter(out, s, dtype) for s in ("train", "val")}
    per_source: dict[str, SourceTokens] = {}
    split_bytes = {"train": 0, "val": 0}
    val_docs = open(out / "val_docs.jsonl", "w", encoding="utf-8")
    workers = max(1, recipe.data.workers)
    encoder = _choose_encoder(tok, recipe.layout.mix, recipe.tokenizer.encoder)
    init_args = (str(tok_dir), recipe.seed, recipe.data.val_fraction, encoder == "tiktoken")
    pool = mp.get_context("fork").Pool(workers, _init, init_args) if workers > 1 else None
    if pool is None:
        _init(*init_args)
    try:
        chunks = _chunks(iter_documents(recipe.layout.mix))
        results = pool.imap(_encode, chunks) if pool else map(_encode, chunks)
        for batch in progress(results, desc="pack", unit="chunk"):
            for meta, ids in batch:
                split = "val" if "text" in meta else "train"
                writers[split].add(ids)
                src = per_source.setdefault(meta["source"], SourceTokens())
                if split == "train":
                    src.train_tokens += len(ids)
                else:
                    src.val_tokens += len(ids)
                src.docs += 1
                src.bytes += meta["bytes"]
                split_bytes[split] += meta["bytes"]
                if split == "val" and "#rep" not in meta["id"]:
                    record = {"id": meta["id"], "source": meta["source"], "text": meta["text"]}
                    val_docs.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if pool:
            pool.terminate()
        val_docs.close()
    splits = {s: w.close(text_bytes=split_bytes[s]) for s, w in writers.items()}
    if splits["train"].tokens == 0 or splits["val"].tokens == 0:
        raise DataError(
            f"{recipe.layout.mix}: the {'train' if not splits['train'].tokens else 'val'} split is empty; "
            "add data or change data.val_fraction"
        )
    total = sum(s.train_tokens + s.val_tokens for s in per_source.values())
    for s in per_source.values():
        s.token_share = round((s.train_tokens + s.val_tokens) / total, 4)
        s.bytes_per_token = round(s.bytes / max(s.train_tokens + s.val_tokens, 1), 3)
    TokenManifest(
        dtype=dtype.name,
        vocab_size=len(tok),
        eos_id=tok.eos_token_id,
        bos_id=tok.bos_token_id,
        splits=splits,
        tokenizer_hash=tokenizer_hash(tok_dir),
        encoder=encoder,
        seed=recipe.seed,
        val_fraction=recipe.data.val_fraction,
        sources=per_source,
    ).write(out)
    return {
        "train_tokens": splits["train"].tokens,
        "val_tokens": splits["val"].tokens,
        "dtype": dtype.name,
    }

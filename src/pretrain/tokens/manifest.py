"""The token manifest (`<output_dir>/tokens/manifest.json`): what `pretrain pack` wrote, read by every consumer.

    {"version": 1, "dtype": "uint16", "vocab_size", "eos_id", "bos_id",
     "tokenizer_hash", "encoder", "seed", "val_fraction",            (written by `pretrain pack`)
     "splits": {"train": {"shards": [{"file", "index", "tokens", "docs", "ids"}], "tokens", "docs", "bytes"},
                "val": {...}},
     "sources": {name: {"train_tokens", "val_tokens", "docs", "bytes", "token_share", "bytes_per_token",
                        "requested_share", "target_tokens", "epochs", "capped", "val_bytes",
                        "shards": {"train": [{"file", "index", "tokens", "docs"}], "val": [...]}}}}

Token shards are kept per source (`<source>/{train,val}-NNNNN-NNN.bin`): the splits list them all (source by
source) for the loader, and each source lists its own, so a staged mix can be drawn at load time.

The packer (pack.py) writes it; the data loader, validation (bits per byte from the val split's bytes and
tokens) and the model card read it through `TokenManifest.read`. Keys that a writer leaves unset (the
test helper `write_packed` has no tokenizer, seed or sources) are omitted from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pretrain.core.errors import DataError
from pretrain.core.layout import MANIFEST

VERSION = 1


@dataclass
class TokenShard:
    """One `{split}-NNNNN.bin` file of token ids, its `.idx.npy` of document start offsets and, when the packer
    knew them, its `.ids.txt` of the documents' ids (one per line, as in the mix; what spike forensics name)."""

    file: str
    index: str
    tokens: int = 0
    docs: int = 0
    ids: str | None = None

    def to_json(self) -> dict:
        out = {"file": self.file, "index": self.index, "tokens": self.tokens, "docs": self.docs}
        return {**out, "ids": self.ids} if self.ids else out


@dataclass
class TokenSplit:
    """A split's shards, read in order as one token stream."""

    shards: list[TokenShard]
    tokens: int
    docs: int
    bytes: int | None = None
    """UTF-8 bytes of the split's documents: bits per byte = nats/token * tokens / bytes / ln 2."""

    @property
    def bytes_per_token(self) -> float:
        """0.0 when the packer recorded no byte count (then bits per byte cannot be computed)."""
        return (self.bytes or 0) / max(self.tokens, 1)

    def to_json(self) -> dict:
        out = {"shards": [s.to_json() for s in self.shards], "tokens": self.tokens, "docs": self.docs}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass
class SourceTokens:
    """Per mix source: tokens in each split, documents and text bytes (what the model card tabulates)."""

    train_tokens: int = 0
    val_tokens: int = 0
    docs: int = 0
    bytes: int = 0
    token_share: float = 0.0
    bytes_per_token: float = 0.0
    requested_share: float | None = None
    """The source's normalised weight: the share of the tokens the mix aims at."""
    target_tokens: int | None = None
    epochs: float | None = None
    """Tokens packed / clean tokens available (above 1: repeated)."""
    capped: bool | None = None
    """True when max_epochs stopped the source short of its share."""
    shards: dict[str, list[TokenShard]] | None = None
    """The source's own shards per split (a subset of the splits' shards)."""
    val_bytes: int | None = None
    """UTF-8 bytes of the source's val documents (its own val bits per byte); None in older manifests."""

    @property
    def val_bytes_per_token(self) -> float:
        """Bytes per token of the source's val split (of the whole source where the manifest predates
        `val_bytes`); 0.0 when unknown."""
        if self.val_bytes is not None and self.val_tokens:
            return self.val_bytes / self.val_tokens
        return self.bytes_per_token

    def to_json(self) -> dict:
        out = {
            "train_tokens": self.train_tokens,
            "val_tokens": self.val_tokens,
            "docs": self.docs,
            "bytes": self.bytes,
            "token_share": self.token_share,
            "bytes_per_token": self.bytes_per_token,
        }
        for key in ("requested_share", "target_tokens", "epochs", "capped", "val_bytes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.shards is not None:
            out["shards"] = {split: [s.to_json() for s in shards] for split, shards in self.shards.items()}
        return out

    @classmethod
    def from_json(cls, raw: dict) -> SourceTokens:
        raw = dict(raw)
        shards = raw.pop("shards", None)
        if shards is not None:
            shards = {split: [TokenShard(**s) for s in items] for split, items in shards.items()}
        return cls(**raw, shards=shards)


@dataclass
class TokenManifest:
    dtype: str
    """numpy dtype name of the shards' ids: uint16 for vocabularies up to 65,535, else uint32."""
    vocab_size: int
    eos_id: int
    bos_id: int | None
    splits: dict[str, TokenSplit]
    tokenizer_hash: str | None = None
    """Hash of the tokenizer files the shards were packed with (the loader refuses another tokenizer)."""
    encoder: str | None = None
    """"tiktoken" or "tokenizers": which encoder packed the shards (the ids are the same)."""
    seed: int | None = None
    val_fraction: float | None = None
    sources: dict[str, SourceTokens] | None = None
    version: int = VERSION

    # ------------------------------------------------------------------ file
    @staticmethod
    def path(folder: Path) -> Path:
        return Path(folder) / MANIFEST

    def write(self, folder: Path) -> Path:
        path = self.path(folder)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> TokenManifest:
        """The manifest of a tokens folder; a missing, corrupt or incomplete one is a `DataError` naming it."""
        path = cls.path(folder)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: missing — run `pretrain pack RECIPE` first") from None
        except ValueError as exc:
            raise DataError(f"{path}: corrupt manifest ({exc}); re-run `pretrain pack RECIPE`") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: corrupt manifest (not a JSON object); re-run `pretrain pack RECIPE`")
        for key in ("dtype", "eos_id", "splits", "vocab_size"):
            if key not in raw:
                raise DataError(f"{path}: manifest lacks {key!r}; re-run `pretrain pack RECIPE`")
        try:
            return cls.from_json(raw)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{path}: corrupt manifest ({type(exc).__name__}: {exc}); re-run `pretrain pack RECIPE`"
            ) from None

    @classmethod
    def read_optional(cls, folder: Path) -> TokenManifest | None:
        """The manifest, or None when the folder has none or an unreadable one (the model card shows n/a)."""
        try:
            return cls.read(folder)
        except DataError:
            return None

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """The file's content; optional keys left unset are omitted (the key order is the file's)."""
        out: dict = {
            "version": self.version,
            "dtype": self.dtype,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
        }
        for key in ("tokenizer_hash", "encoder", "seed", "val_fraction"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["splits"] = {name: split.to_json() for name, split in self.splits.items()}
        if self.sources is not None:
            out["sources"] = {name: counts.to_json() for name, counts in self.sources.items()}
        return out

    @classmethod
    def from_json(cls, raw: dict) -> TokenManifest:
        splits = {
            name: TokenSplit(
                shards=[TokenShard(**shard) for shard in split["shards"]],
                tokens=split["tokens"],
                docs=split["docs"],
                bytes=split.get("bytes"),
            )
            for name, split in raw["splits"].items()
        }
        sources = raw.get("sources")
        return cls(
            dtype=raw["dtype"],
            vocab_size=raw["vocab_size"],
            eos_id=raw["eos_id"],
            bos_id=raw.get("bos_id"),
            splits=splits,
            tokenizer_hash=raw.get("tokenizer_hash"),
            encoder=raw.get("encoder"),
            seed=raw.get("seed"),
            val_fraction=raw.get("val_fraction"),
            sources=None if sources is None else {k: SourceTokens.from_json(v) for k, v in sources.items()},
            version=raw.get("version", VERSION),
        )

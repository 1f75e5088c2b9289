"""Documents to token ids as packing stores them: `[BOS] ids EOS` in the shards' dtype.

Encoding uses tiktoken when it reproduces the tokenizer exactly (tokens/fast_encode.py) and both encoders agree
on a sample of the mix, else HF `tokenizers`; `tokenizer.encoder` can force either. The ids are the same
either way; only the speed differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pretrain.core.errors import RecipeError
from pretrain.core.progress import get_logger
from pretrain.data.mixio import iter_documents
from pretrain.tokens.fast_encode import FastEncoder, tiktoken_encoding
from pretrain.tokens.shards import dtype_for
from pretrain.tokens.tokenizer import load_tokenizer

log = get_logger("pretrain.pack")

SAMPLE_CHECK_CHARS = 1 << 20  # the encoders must agree on this much of the mix before tiktoken is used


def choose_encoder(tok, mix: Path, requested: str) -> str:
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


class DocumentEncoder:
    """Documents -> `[BOS] ids EOS` arrays in the shards' dtype (tiktoken or HF tokenizers)."""

    def __init__(self, tokenizer_dir: Path, use_tiktoken: bool):
        tok = load_tokenizer(Path(tokenizer_dir))
        self.dtype = dtype_for(len(tok))
        backend = tok.backend_tokenizer
        self.encoder = FastEncoder(backend, tiktoken_encoding(backend) if use_tiktoken else None)
        self.bos, self.eos = tok.bos_token_id, tok.eos_token_id
        self.add_bos = (
            bool(tok("a")["input_ids"][:1] == [tok.bos_token_id]) if tok.bos_token_id is not None else False
        )

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for e in self.encoder.encode_batch(texts):
            ids = np.empty(len(e) + 1 + int(self.add_bos), dtype=self.dtype)
            if self.add_bos:
                ids[0] = self.bos
            ids[int(self.add_bos) : -1] = e
            ids[-1] = self.eos
            out.append(ids)
        return out

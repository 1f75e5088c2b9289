"""Recipe section `tokenizer`: train a byte-level BPE on the mix, or reuse a pretrained one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrain.config.base import Section


class TokenizerExtension(Section):
    """New tokens appended to a reused tokenizer (continued pretraining on a mix the parent tokenizes poorly)."""

    new_tokens: int = Field(
        0,
        ge=0,
        le=1_048_576,
        description="tokens to learn from the curated mix and append after the parent's ids: BPE merges "
        "continued from the parent's own segmentation of a sample of the mix, most frequent first, keeping "
        "only strings the parent lacks (its ids and merges are unchanged); choose it so the new vocabulary "
        "is a multiple of 64",
    )
    tokens: list[str] = Field(
        default_factory=list,
        description="tokens to append exactly as written (domain terms, markup), after the learnt ones, as "
        "added tokens matched before BPE; each must be new to the parent tokenizer and listed once, else an "
        "error before any work",
    )
    sample_bytes: int = Field(
        10_000_000,
        gt=0,
        description="bytes of the mix (sampled by mixture weight, like tokenizer.sample_bytes) the new "
        "tokens are learnt on; the merge learner runs in Python, about 1 s per MB",
    )

    @model_validator(mode="after")
    def _something_to_add(self) -> TokenizerExtension:
        if not self.new_tokens and not self.tokens:
            raise ValueError("adds nothing; set new_tokens > 0 or list tokens (or remove tokenizer.extend)")
        seen: set[str] = set()
        for i, token in enumerate(self.tokens):
            if not token:
                raise ValueError(f"tokens.{i}: an empty string is not a token; remove it")
            if token in seen:
                raise ValueError(f"tokens.{i}: {token!r} is listed twice; list each token once")
            seen.add(token)
        return self


class TokenizerConfig(Section):
    pretrained: str | None = Field(
        None,
        description="tokenizer to reuse instead of training one: a folder (relative to the recipe) or a Hub "
        "id, optionally `@revision`; set it to share a vocabulary with another model. Unset with "
        "model.init_from: the parent model's tokenizer",
    )
    vocab_size: int = Field(
        8192,
        ge=256,
        le=1_048_576,
        description="BPE vocabulary size in tokens, special tokens included, rounded up to a multiple of 64; "
        "larger compresses better but costs embedding parameters (49152 for SmolLM2)",
    )
    min_frequency: int = Field(
        2,
        ge=1,
        description="a BPE merge must occur at least this often in the sample; raise it for noisy data",
    )
    sample_bytes: int = Field(
        50_000_000,
        gt=0,
        description="bytes of text sampled uniformly from the mix (so by mixture weight) to train the BPE; "
        "more gives merges closer to the full mix but trains slower",
    )
    bos_token: str = Field(
        "<|bos|>", description="beginning-of-sequence special token, prepended when add_bos is true"
    )
    eos_token: str = Field(
        "<|endoftext|>", description="end-of-text special token; packing puts it after every document"
    )
    pad_token: str = Field(
        "<|pad|>",
        description="padding special token (the model config's pad_token_id); packed training never inserts it",
    )
    extra_special_tokens: list[str] = Field(
        default_factory=lambda: ["<|im_start|>", "<|im_end|>", "<|reserved_0|>", "<|reserved_1|>"],
        description="reserved so post-training can add a chat template without resizing embeddings",
    )
    reference: str | None = Field(
        None,
        description="tokenizer folder (tokenizer.json or GPT-2 vocab.json+merges.txt) to compare compression with",
    )
    split_digits: bool = Field(
        True,
        description="pre-tokenize every digit as its own token (numbers generalise better); "
        "false lets BPE merge digit runs",
    )
    add_bos: bool = Field(
        True,
        description="the tokenizer prepends bos_token to every encoded text (so every packed document "
        "starts with it); false for EOS-only separation",
    )
    extend: TokenizerExtension | None = Field(
        None,
        description="append new tokens to the reused tokenizer (tokenizer.pretrained or model.init_from's): "
        "learnt on the mix and/or listed; with model.init_from their embedding rows start as the mean of "
        "the parent's rows for the parent's encoding of each new token",
    )
    encoder: Literal["auto", "tiktoken", "tokenizers"] = Field(
        "auto",
        description="encoder `pretrain pack` uses (the ids are identical, only the speed differs): auto takes "
        "tiktoken when it reproduces the tokenizer on a sample of the mix, else HF tokenizers",
    )

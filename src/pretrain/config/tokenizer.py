"""Recipe section `tokenizer`: train a byte-level BPE on the mix, or reuse a pretrained one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pretrain.config.base import Section


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
    encoder: Literal["auto", "tiktoken", "tokenizers"] = Field(
        "auto",
        description="encoder `pretrain pack` uses (the ids are identical, only the speed differs): auto takes "
        "tiktoken when it reproduces the tokenizer on a sample of the mix, else HF tokenizers",
    )

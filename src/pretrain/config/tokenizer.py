"""Recipe section `tokenizer`: train a byte-level BPE on the mix, or reuse a pretrained one."""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import Section


class TokenizerConfig(Section):
    pretrained: str | None = Field(
        None, description="path of an existing tokenizer folder to reuse instead of training"
    )
    vocab_size: int = Field(8192, ge=256, le=1_048_576, description="rounded up to a multiple of 64")
    min_frequency: int = Field(2, ge=1)
    sample_bytes: int = Field(
        50_000_000, gt=0, description="bytes of the mix sampled (by mixture weight) for training"
    )
    bos_token: str = "<|bos|>"
    eos_token: str = "<|endoftext|>"
    pad_token: str = "<|pad|>"
    extra_special_tokens: list[str] = Field(
        default_factory=lambda: ["<|im_start|>", "<|im_end|>", "<|reserved_0|>", "<|reserved_1|>"],
        description="reserved so post-training can add a chat template without resizing embeddings",
    )
    reference: str | None = Field(
        None,
        description="tokenizer folder (tokenizer.json or GPT-2 vocab.json+merges.txt) to compare compression with",
    )
    split_digits: bool = True
    add_bos: bool = True

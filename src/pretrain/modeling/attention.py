"""The attention implementation a model is built with: the recipe's, except FlashAttention-2 without CUDA."""

from __future__ import annotations

import torch

from pretrain.config import Recipe


def attn_implementation(recipe: Recipe) -> str:
    """`model.attn_implementation`, with `flash_attention_2` falling back to `sdpa` where no CUDA device is
    (its kernels exist only for CUDA; a CPU test or a laptop run of a GPU recipe still builds the model)."""
    attn = recipe.model.attn_implementation
    return "sdpa" if attn == "flash_attention_2" and not torch.cuda.is_available() else attn

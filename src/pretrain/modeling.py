"""Random-init model from the recipe's `model` section (`AutoConfig` + `from_config`).

    config = build_hf_config(recipe, vocab_size=len(tokenizer))
    model = build_model(recipe, vocab_size)          # random init, documented scheme

`vocab_size` always comes from the tokenizer (never from the recipe).
"""

from __future__ import annotations

import math

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig
from transformers.pytorch_utils import Conv1D

from pretrain.config import Recipe


def build_hf_config(
    recipe: Recipe,
    vocab_size: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> PretrainedConfig:
    """`AutoConfig.for_model(model_type, **fields)` with the tokenizer's vocab size and special ids."""
    fields = dict(recipe.model.hf_fields)
    fields["vocab_size"] = int(vocab_size)
    for key, value in (
        ("bos_token_id", bos_token_id),
        ("eos_token_id", eos_token_id),
        ("pad_token_id", pad_token_id),
    ):
        if value is not None:
            fields[key] = value
    config = AutoConfig.for_model(recipe.model.model_type, **fields)
    config.initializer_range = recipe.model.init_std
    return config


def count_parameters(config: PretrainedConfig) -> tuple[int, int]:
    """(total, non-embedding) parameter counts, exact, by building the model on the meta device.

    Non-embedding excludes the input embedding and an untied output head (the Kaplan/Chinchilla
    convention); positional embedding tables count as embeddings too.
    """
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = 0
    seen: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None:
            continue
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                embedding += p.numel()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and "pos" in name.lower():
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    embedding += p.numel()
    return total, total - embedding


RESIDUAL_OUTPUT_NAMES = ("o_proj", "down_proj", "c_proj", "out_proj", "dense_4h_to_h", "fc2", "wo")


def init_weights(model: torch.nn.Module, std: float, scaled_residual: bool, num_layers: int) -> None:
    """Documented random init: every Linear / GPT-2 Conv1D / Embedding ~ N(0, std), biases 0, norms at
    their neutral gain; residual-branch output projections (`RESIDUAL_OUTPUT_NAMES`) use
    std / sqrt(2 * num_layers) (GPT-2 / OLMo), so the residual stream's variance does not grow with depth.

    A norm's neutral gain is weight 1 for `x * w` norms and weight 0 for the `x * (1 + w)` norms of the
    Gemma family (Gemma 1-3, Qwen3-Next): which one a module is, is found by running it (`_scales_by_one_plus`).
    """
    residual_std = std / math.sqrt(2 * max(num_layers, 1)) if scaled_residual else std
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear | Conv1D):  # Conv1D: GPT-2's projections, weight (in, out)
                s = residual_std if name.rsplit(".", 1)[-1] in RESIDUAL_OUTPUT_NAMES else std
                torch.nn.init.normal_(module.weight, mean=0.0, std=s)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            elif _is_norm(module):
                if _scales_by_one_plus(module):
                    torch.nn.init.zeros_(module.weight)
                else:
                    torch.nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    torch.nn.init.zeros_(module.bias)


def _is_norm(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return weight is not None and weight.ndim == 1 and "norm" in type(module).__name__.lower()


def _scales_by_one_plus(norm: torch.nn.Module) -> bool:
    """True when the norm multiplies by (1 + weight): with weight and bias zeroed it still passes x through."""
    weight, bias = norm.weight, getattr(norm, "bias", None)
    saved = [p.detach().clone() for p in (weight, bias) if p is not None]
    probe = torch.randn(2, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight)
    try:
        for p in (weight, bias):
            if p is not None:
                p.zero_()
        try:
            out = norm(probe)
        except Exception:  # a norm that takes other input shapes: treat as the common x * w form
            return False
        return bool(out.abs().sum() > 0)
    finally:
        for p, value in zip([p for p in (weight, bias) if p is not None], saved):
            p.copy_(value)


def build_model(recipe: Recipe, tokenizer) -> torch.nn.Module:
    """Random-init causal LM for the recipe, sized by the tokenizer, with the recipe's init scheme."""
    config = build_hf_config(
        recipe, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    attn = recipe.model.attn_implementation
    if attn == "flash_attention_2" and not torch.cuda.is_available():
        attn = "sdpa"
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation=attn, trust_remote_code=recipe.model.trust_remote_code
    )
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    init_weights(model, recipe.model.init_std, recipe.model.scaled_residual_init, layers)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    if recipe.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model

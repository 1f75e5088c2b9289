"""The model to train: random init from the recipe's `model` section, or a parent model (`model.init_from`).

    config = build_hf_config(recipe, vocab_size=len(tokenizer))
    model = build_model(recipe, tokenizer)           # random init (documented scheme), or the parent's weights

`vocab_size` always comes from the tokenizer (never from the recipe). A parent's config and safetensors
weights are loaded by `pretrain.modeling.parent`.
"""

from __future__ import annotations

import math

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig
from transformers.pytorch_utils import Conv1D

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.modeling.attention import attn_implementation
from pretrain.modeling.parent import load_parent


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


def embedding_parameter_ids(model: torch.nn.Module) -> set[int]:
    """Parameters of every nn.Embedding (a tied LM head shares the input embedding's parameter)."""
    return {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}


def head_parameter_ids(model: torch.nn.Module) -> set[int]:
    """Parameters of the LM head (the output embedding), tied or not."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return {id(p) for p in head.parameters()} if head is not None else set()


def muon_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The hidden matrices Muon trains: 2-D weights that are neither an embedding nor the LM head."""
    excluded = embedding_parameter_ids(model) | head_parameter_ids(model)
    return [p for p in model.parameters() if p.requires_grad and p.ndim == 2 and id(p) not in excluded]


def muon_parameter_count(config: PretrainedConfig) -> int:
    """How many parameters `muon_parameters` gives Muon in a model of this config (built on the meta device)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in muon_parameters(model))


# beyond these a size is a typo, not a model: building even its meta skeleton overflows or takes for ever
SIZE_LIMITS = {
    "hidden_size": 2**20,
    "intermediate_size": 2**23,
    "num_hidden_layers": 10_000,
    "num_attention_heads": 2**14,
    "num_key_value_heads": 2**14,
    "vocab_size": 2**25,
    "max_position_embeddings": 2**30,
}


def check_sizes(config: PretrainedConfig) -> None:
    """A `PretrainError` naming the first size beyond `SIZE_LIMITS` (`hidden_size: 1000000000000` was a
    torch overflow traceback in `pretrain plan`)."""
    for key, limit in SIZE_LIMITS.items():
        value = getattr(config, key, None)
        if isinstance(value, int) and value > limit:
            raise PretrainError(
                f"model.{key}: {value} is beyond any model this can build (at most {limit}); check the value"
            )


def count_parameters(config: PretrainedConfig) -> tuple[int, int]:
    """(total, non-embedding) parameter counts, exact, by building the model on the meta device.

    Non-embedding excludes the input embedding and an untied output head (the Kaplan/Chinchilla
    convention); positional embedding tables count as embeddings too.
    """
    check_sizes(config)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (RuntimeError, ValueError, OverflowError) as exc:  # a shape the architecture cannot take
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainError(
            f"model: a {config.model_type} of this shape cannot be built ({first}); check the model sizes"
        ) from None
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
    """The causal LM to train: the parent's weights with `model.init_from`, else a random init for the
    recipe, sized by the tokenizer, with the recipe's init scheme."""
    if recipe.model.init_from:
        return load_parent(recipe, tokenizer).model
    config = build_hf_config(
        recipe, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    model = AutoModelForCausalLM.from_config(
        config,
        attn_implementation=attn_implementation(recipe),
        trust_remote_code=recipe.model.trust_remote_code,
    )
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    init_weights(model, recipe.model.init_std, recipe.model.scaled_residual_init, layers)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model

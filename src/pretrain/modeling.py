"""Random-init model from the recipe's `model` section (`AutoConfig` + `from_config`).

    config = build_hf_config(recipe, vocab_size=len(tokenizer))
    model = build_model(recipe, vocab_size)          # random init, documented scheme

`vocab_size` always comes from the tokenizer (never from the recipe).
"""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

from pretrain.config import Recipe


def build_hf_config(recipe: Recipe, vocab_size: int, bos_token_id: int | None = None,
                    eos_token_id: int | None = None, pad_token_id: int | None = None) -> PretrainedConfig:
    """`AutoConfig.for_model(model_type, **fields)` with the tokenizer's vocab size and special ids."""
    fields = dict(recipe.model.hf_fields)
    fields["vocab_size"] = int(vocab_size)
    for key, value in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
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
    import torch
    from transformers import AutoModelForCausalLM

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

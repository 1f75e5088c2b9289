"""A parent model for continued pretraining (`model.init_from`): its config and safetensors weights, checked
against the recipe and the tokenizer, with embedding rows for the tokens a tokenizer extension appended.

    parent = load_parent(recipe, tokenizer)          # ParentModel(model, source)

The recipe's architecture keys must agree with the parent's config; a tokenizer extended beyond the parent's
vocabulary gets new embedding rows (see `tokens/tokenizer.py`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from pretrain.config import Recipe
from pretrain.config.refs import parse_pretrained_ref
from pretrain.core.errors import PretrainError, RecipeError, StageError
from pretrain.hub.pull import MODEL_FILES, REMOTE_CODE_FILES, fetch
from pretrain.modeling.attention import attn_implementation
from pretrain.tokens.extension import TokenizerExtensionRecord


class ParentModel(NamedTuple):
    model: torch.nn.Module
    source: dict[str, str | None]  # model id (or folder), revision asked for, commit it resolved to


def parent_conflicts(recipe: Recipe, parent: PretrainedConfig) -> list[str]:
    """`file: model.key: ...` for every key of the recipe's model section the parent's config disagrees with."""
    label, spec = recipe.source_label, recipe.model.init_from
    fix = "remove the key (the parent's value is used) or make it match"
    problems = []
    if parent.model_type != recipe.model.model_type:
        problems.append(
            f"{label}: model.model_type: {recipe.model.model_type!r}, but model.init_from {spec} is a "
            f"{parent.model_type!r} model; set model_type: {parent.model_type}"
        )
    for key, value in recipe.model.hf_fields.items():
        if not hasattr(parent, key):
            problems.append(f"{label}: model.{key}: the parent ({spec}) has no such config field; remove it")
        elif getattr(parent, key) != value:
            problems.append(
                f"{label}: model.{key}: {value!r}, but the parent ({spec}) has {getattr(parent, key)!r}; {fix}"
            )
    return problems


def load_parent(recipe: Recipe, tokenizer) -> ParentModel:
    """`model.init_from`: the parent's config and safetensors weights (fp32), checked against the recipe and
    the tokenizer; raises before any training when they disagree."""
    from transformers import AutoConfig

    m = recipe.model
    ref = parse_pretrained_ref(m.init_from, recipe.resolve_path, "model.init_from")
    folder = fetch(ref, MODEL_FILES + (REMOTE_CODE_FILES if m.trust_remote_code else []), "model.init_from")
    if not any(folder.glob("*.safetensors")):
        raise PretrainError(
            f"model.init_from: {m.init_from}: no .safetensors weights in {folder} (pickled .bin weights are "
            "never loaded: they can run code); save the parent with save_pretrained(safe_serialization=True)"
        )
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise PretrainError(f"model.init_from: {m.init_from}: cannot read its config.json ({exc})") from None
    problems = parent_conflicts(recipe, config)
    if problems:
        raise RecipeError(problems)
    extension = tokenizer_extension(recipe, tokenizer)
    vocab = extension.parent_vocab_size if extension else len(tokenizer)
    if vocab > config.vocab_size:
        raise PretrainError(
            f"model.init_from: {m.init_from}: the tokenizer has {vocab} tokens but the parent's embeddings only "
            f"{config.vocab_size}; use the parent's tokenizer (tokenizer.pretrained) or extend it with "
            "tokenizer.extend"
        )
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        config=config,
        use_safetensors=True,
        dtype=torch.float32,
        attn_implementation=attn_implementation(recipe),
        trust_remote_code=m.trust_remote_code,
    )
    if extension:
        add_token_rows(model, extension)
    return ParentModel(model, ref.describe(folder))


def tokenizer_extension(recipe: Recipe, tokenizer) -> TokenizerExtensionRecord | None:
    """The record of the tokens `tokenizer.extend` appended to the run's tokenizer, checked against it."""
    if recipe.tokenizer.extend is None:
        return None
    record = TokenizerExtensionRecord.read(recipe.layout.tokenizer)
    if record.vocab_size != len(tokenizer):
        raise StageError(
            f"{recipe.layout.tokenizer}: the tokenizer has {len(tokenizer)} tokens but its extension record "
            f"{record.parent_vocab_size} + {len(record.tokens)}; re-run `pretrain tokenizer RECIPE --force`"
        )
    return record


def add_token_rows(model: torch.nn.Module, extension: TokenizerExtensionRecord) -> None:
    """Rows for the tokens a tokenizer extension appended: the embeddings (and an untied output head) grow to
    the extended vocabulary when the parent has fewer rows, and each new row is set to the mean of the
    parent's rows for the parent's encoding of that token (its other rows are untouched)."""
    if extension.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(extension.vocab_size, mean_resizing=False)
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != embedding.data_ptr()
    head_bias = getattr(head, "bias", None) if untied else None
    with torch.no_grad():
        for token in extension.tokens:
            rows = list(token.parent_ids)
            embedding[token.id] = embedding[rows].mean(dim=0)
            if untied:
                head.weight[token.id] = head.weight[rows].mean(dim=0)
            if head_bias is not None:
                head_bias[token.id] = head_bias[rows].mean()

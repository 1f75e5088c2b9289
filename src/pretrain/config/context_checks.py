"""Checks of context-extension stages (`train.data_stages[].seq_len / rope_theta / rope_scaling`): the context
only grows, every stage's batch geometry divides, and the RoPE settings are ones the architecture knows.

Each check returns `file: dotted.key: problem (what to do)` lines (see config/checks.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pretrain.config.stages import stage_geometries

if TYPE_CHECKING:
    from pretrain.config import Recipe

# rope_type values transformers builds rotary embeddings for (modeling_rope_utils.ROPE_INIT_FUNCTIONS + default)
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")


def context_stage_problems(recipe: Recipe, label: str) -> list[str]:
    train = recipe.train
    problems: list[str] = []
    previous, previous_key = train.seq_len, "train.seq_len"
    world = recipe.world_size_from_accelerate_config() or 1
    for i, (stage, geometry) in enumerate(zip(train.data_stages, stage_geometries(train))):
        key = f"{label}: train.data_stages.{i}"
        if geometry.seq_len < previous:
            problems.append(
                f"{key}.seq_len: {geometry.seq_len} is shorter than {previous} ({previous_key}); a stage may keep "
                "or raise the context, never shorten it"
            )
        previous, previous_key = geometry.seq_len, f"train.data_stages.{i}.seq_len"
        per_step = geometry.micro_batch_size * geometry.seq_len * world
        if train.global_batch_tokens % per_step:
            problems.append(
                f"{key}.seq_len: train.global_batch_tokens={train.global_batch_tokens} is not a multiple of this "
                f"stage's micro batch {geometry.micro_batch_size} x seq_len {geometry.seq_len} x {world} "
                f"process(es) = {per_step}; change the batch, the stage's seq_len or its micro_batch_size"
            )
        problems += _rope_problems(recipe, key, stage, geometry)
    return problems


def longest_seq_len(recipe: Recipe) -> int:
    """The longest sequence the run trains on: train.seq_len or a longer data stage's."""
    return max([recipe.train.seq_len] + [g.seq_len for g in stage_geometries(recipe.train)])


def _rope_problems(recipe: Recipe, key: str, stage: Any, geometry: Any) -> list[str]:
    if stage.rope_theta is None and stage.rope_scaling is None:
        return []
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = recipe.model.model_type
    if model_type not in CONFIG_MAPPING:
        return []  # reported by the model checks
    field = "rope_scaling" if stage.rope_scaling is not None else "rope_theta"
    try:
        base = AutoConfig.for_model(model_type, **recipe.model.hf_fields)
    except Exception:  # the model section's own problems are reported by the model checks
        return []
    if not isinstance(getattr(base, "rope_parameters", None), dict):
        return [
            f"{key}.{field}: a {model_type} model has no rotary position embedding (its config has no "
            "rope_parameters); remove the stage's RoPE settings (seq_len alone extends the context)"
        ]
    rope = {**base.rope_parameters, **(geometry.rope or {})}
    if stage.rope_scaling is not None:
        rope_type = stage.rope_scaling.get("rope_type")
        if rope_type not in ROPE_TYPES:
            return [
                f"{key}.rope_scaling.rope_type: {rope_type!r} is not a RoPE scaling transformers knows for "
                f"{model_type} (known: {', '.join(ROPE_TYPES)}); pick one of those"
            ]
    fields = {**recipe.model.hf_fields, "rope_parameters": rope}
    fields.pop("rope_theta", None)
    fields["max_position_embeddings"] = max(geometry.seq_len, base.max_position_embeddings or 0)
    try:
        AutoConfig.for_model(model_type, **fields)
    except Exception as exc:  # transformers validates rope_parameters when the config is built
        reason = str(exc).strip("'\"").splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{key}.{field}: transformers refuses these RoPE parameters {rope}: {reason}"]
    return []

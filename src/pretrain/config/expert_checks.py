"""Checks of expert parallelism (`parallelism_config_ep_size`): the mesh's sizes, and a model's experts against
them, before training; `config/parallelism.py` reads the size with the mesh's others, `train/parallel/` splits
the experts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pretrain.config.mesh_shape import MeshError, MeshShape

# expert parallelism: the project's own key (accelerate has none; it reads past unknown keys of the section)
EP_SIZE_KEY = "parallelism_config_ep_size"
# expert parallelism borrows its ranks from the FSDP shards (torchtitan's layout, transformers' `efsdp`): the experts
# are split over ep consecutive dp_shard ranks, and each such split is repeated dp_shard / ep times, the copies
# FSDP2-sharded over each other; the tokens of the ep ranks reach their experts by all-to-all
EP_RULE = (
    "expert parallelism borrows its ranks from the FSDP shards, so ep_size must divide "
    "parallelism_config_dp_shard_size"
)
EP_UNDER_TP = (
    "expert parallelism is supported with tensor parallel size 1 only (tokens are exchanged between data-parallel "
    "ranks, not TP peers); set parallelism_config_tp_size to 1 or parallelism_config_ep_size to 1"
)
# how a config names its routed-expert count (qwen3_moe / olmoe / qwen2_moe, mixtral, deepseek)
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


def ep_problem(shape: MeshShape) -> str | None:
    """What keeps this mesh's sizes from expert parallelism (EP_RULE, no TP), whatever the model."""
    if shape.ep == 1:
        return None
    if shape.tp > 1:
        return f"{shape.source}: {EP_SIZE_KEY} {shape.ep}: {EP_UNDER_TP}"
    if shape.dp_shard % shape.ep:
        return (
            f"{shape.source}: {EP_SIZE_KEY} {shape.ep} does not divide parallelism_config_dp_shard_size "
            f"{shape.dp_shard}: {EP_RULE}; pick an ep_size that divides it (or 1)"
        )
    return None


def config_expert_fields(config) -> dict[str, Any]:
    """A built config's expert counts by key, through its attributes: its aliases (qwen3_moe keeps num_experts
    as num_local_experts) resolve to the key a recipe names."""
    return {key: getattr(config, key) for key in EXPERT_COUNT_KEYS if hasattr(config, key)}


def expert_count(fields: Mapping[str, Any]) -> tuple[str, int] | None:
    """(the config key, the number of routed experts per MoE layer), or None for a model without experts."""
    return next(
        (
            (key, fields[key])
            for key in EXPERT_COUNT_KEYS
            if isinstance(fields.get(key), int) and fields[key] > 1
        ),
        None,
    )


def expert_problems(
    shape: MeshShape, fields: Mapping[str, Any], has_ep_plan: bool, model_type: str
) -> list[str]:
    """What keeps this model's experts from splitting over `shape.ep` ranks (none when ep is 1)."""
    if shape.ep == 1:
        return []
    count = expert_count(fields)
    if count is None:
        return [
            f"model.model_type: {model_type} has no routed experts (num_experts / num_local_experts), so it cannot "
            f"run with {EP_SIZE_KEY} {shape.ep} ({shape.source}); set it to 1 or train a mixture of experts"
        ]
    if not has_ep_plan:
        return [
            f"model.model_type: {model_type} has no expert-parallel plan in transformers (base_model_ep_plan), so "
            f"it cannot run with {EP_SIZE_KEY} {shape.ep} ({shape.source}); set it to 1 or use a model type with "
            "one (qwen3_moe, olmoe, mixtral, ...)"
        ]
    key, experts = count
    if experts % shape.ep:
        return [
            f"model.{key}: {experts} experts do not divide across {EP_SIZE_KEY} {shape.ep} ({shape.source}); each "
            "expert-parallel rank holds an equal share of every layer's experts: pick an ep_size that divides "
            f"{experts} (and parallelism_config_dp_shard_size), or change {key}"
        ]
    return []


def has_expert_parallel_plan(model_type: str) -> bool:
    """transformers ships an expert-parallel plan for this architecture (`base_model_ep_plan`) whose experts
    take their tokens by dispatch (`ep_dispatch_experts`)."""
    from transformers import AutoConfig

    try:
        plan = getattr(AutoConfig.for_model(model_type), "base_model_ep_plan", None) or {}
    except ValueError:  # an unknown model type: reported by the model checks
        return True
    return "ep_dispatch_experts" in plan.values()


def check_built_experts(config, shape: MeshShape, label: str) -> None:
    """The model built (a parent's config included) splits its experts over the launch's ep ranks, or one
    MeshError names the key and the fix before any weight is cut (`pretrain validate` checks the recipe's)."""
    if shape.ep == 1:
        return
    fields = config_expert_fields(config)
    problems = expert_problems(shape, fields, has_expert_parallel_plan(config.model_type), config.model_type)
    if problems:
        raise MeshError(f"{label}: {problems[0]}")

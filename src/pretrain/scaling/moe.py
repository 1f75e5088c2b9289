"""Mixture-of-experts models: what their config says about routing, and the parameters a token really uses.

    spec = moe_spec(config)                     # MoESpec(num_experts=8, top_k=2, aux_coef=0.01, z_coef=0.0) or None
    active = active_non_embedding(config)       # non-embedding parameters one token runs through

A token passes through `top_k` of each MoE layer's `num_experts` routed experts (plus any shared expert), so
its compute is that of the *active* parameters, while memory holds them all. FLOPs per token and MFU count the
active non-embedding parameters (scaling/flops.py); memory per device counts the total. Routed experts are
the parameters under a module named `experts` (transformers keeps them fused, one [num_experts, ...] tensor
each, in qwen3_moe, olmoe, mixtral, qwen2_moe, ...); shared experts (`shared_expert(s)`) and routers (`gate`)
are always active.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from pretrain.config.expert_checks import config_expert_fields, expert_count
from pretrain.modeling import count_parameters


@dataclass(frozen=True)
class MoESpec:
    """The routing of a mixture-of-experts config."""

    num_experts: int
    top_k: int
    aux_coef: float  # weight of the router's load-balancing loss in the objective (router_aux_loss_coef)
    z_coef: float  # weight of the router z-loss (router_z_loss_coef), 0 when the config has none


def moe_spec(config: PretrainedConfig) -> MoESpec | None:
    """The config's experts and loss weights; None for a dense model (no experts, or a single one)."""
    count = expert_count(config_expert_fields(config))
    top_k = getattr(config, "num_experts_per_tok", None)
    if count is None or not isinstance(top_k, int):
        return None
    return MoESpec(
        count[1],
        top_k,
        float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0),
        float(getattr(config, "router_z_loss_coef", 0.0) or 0.0),
    )


def routed_expert_parameters(config: PretrainedConfig) -> int:
    """Parameters of every routed expert of every MoE layer (0 for a dense model), from the meta-device model."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for name, p in model.named_parameters() if ".experts." in f".{name}")


def active_non_embedding(config: PretrainedConfig) -> int:
    """Non-embedding parameters a token runs through: all of them but the routed experts it is not sent to."""
    _, non_embedding = count_parameters(config)
    spec = moe_spec(config)
    if spec is None:
        return non_embedding
    routed = routed_expert_parameters(config)
    return non_embedding - routed + routed * spec.top_k // spec.num_experts

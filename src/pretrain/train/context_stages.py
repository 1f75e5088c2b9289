"""Context-extension stages on the model side: the RoPE each data stage trains with, and its FLOPs per token.

    context = ContextStages.build(model, recipe, non_embedding_params)   # None without such stages
    flops_per_token = context.enter(loader.stage)                        # before every optimizer step

A stage's `rope_theta` / `rope_scaling` (config/stages.py) replace the matching `rope_parameters` of the model's
config, and every rotary embedding module is rebuilt from that config (its `inv_freq`, attention scaling and
cached lengths), so the checkpoints' config.json carries the RoPE the weights were trained with and loads as
trained. The stage followed is the loader's (the data decides: after a rollback the loader runs ahead of the
step count), so a resume inside or across a long stage puts back the stage's RoPE before its first step.
"""

from __future__ import annotations

from typing import Any

import torch

from pretrain.config.stages import stage_geometries
from pretrain.scaling.flops import flops_per_token


def rotary_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's rotary embedding modules (transformers' `*RotaryEmbedding`, each with an `inv_freq`)."""
    return [
        m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding") and hasattr(m, "inv_freq")
    ]


def apply_rope(model: torch.nn.Module, rope_parameters: dict[str, Any]) -> None:
    """Set the config's `rope_parameters` and rebuild every rotary embedding from it, in place (buffers keep
    their device, so a prepared / sharded model keeps working)."""
    model.config.rope_parameters = dict(rope_parameters)
    for module in rotary_modules(model):
        fresh = type(module)(model.config)
        with torch.no_grad():
            for name in ("inv_freq", "original_inv_freq"):
                if hasattr(module, name) and hasattr(fresh, name):
                    getattr(module, name).copy_(getattr(fresh, name))
        for name in ("rope_type", "attention_scaling", "max_seq_len_cached", "original_max_seq_len"):
            if hasattr(fresh, name):
                setattr(module, name, getattr(fresh, name))


class ContextStages:
    """The RoPE and the FLOPs per token of each data stage (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, ropes: list[dict | None], stage_flops: list[float]):
        self.model = model
        self.base = dict(model.config.rope_parameters) if ropes and any(ropes) else None
        self.ropes = [{**self.base, **rope} if rope else self.base for rope in ropes]
        self.stage_flops = stage_flops
        self.applied = self.base

    @classmethod
    def build(cls, model: torch.nn.Module, recipe, non_embedding_params: int) -> ContextStages | None:
        """None when no data stage changes the sequence length or the RoPE."""
        geometries = stage_geometries(recipe.train)
        if all(g.seq_len == recipe.train.seq_len and g.rope is None for g in geometries):
            return None
        flops = [flops_per_token(model.config, non_embedding_params, g.seq_len) for g in geometries]
        return cls(model, [g.rope for g in geometries], flops)

    def enter(self, stage: int) -> float:
        """Put the model in `stage`'s RoPE (when it differs from the one applied); its FLOPs per token."""
        wanted = self.ropes[stage]
        if wanted is not None and wanted != self.applied:
            apply_rope(self.model, wanted)
            self.applied = wanted
        return self.stage_flops[stage]

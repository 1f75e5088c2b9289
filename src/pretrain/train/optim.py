"""AdamW with weight decay only on matrices that are not norms, biases or embeddings (configurable).

Decaying norm gains and biases pulls them towards zero for no benefit; embeddings are excluded by
default as in most LLM recipes (OLMo, SmolLM). Fused AdamW is used on CUDA (one kernel for all
parameters), foreach elsewhere.
"""

from __future__ import annotations

import torch

from pretrain.config.train import OptimizerConfig


def param_groups(model: torch.nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Two groups: decayed matrices, and the rest (1-D norm gains, biases, embeddings per `no_decay`)."""
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_bias = name.endswith(".bias")
        is_norm = p.ndim == 1 and not is_bias  # norm gains are the only other 1-D weights in a transformer
        is_emb = id(p) in embedding_ids  # a tied LM head shares the embedding's parameter
        skip = (
            ("norm" in cfg.no_decay and is_norm)
            or ("bias" in cfg.no_decay and is_bias)
            or ("embedding" in cfg.no_decay and is_emb)
        )
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig, device_type: str) -> torch.optim.Optimizer:
    fused = cfg.fused is True or (cfg.fused == "auto" and device_type == "cuda")
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kwargs
    )

"""Activation checkpointing per transformer block (`model.gradient_checkpointing`): full, or torchtitan's
selective op policy.

    apply_activation_checkpointing(model, "selective")   # before FSDP / compile wrap the model

`true` recomputes each whole block in the backward pass: only the block's input is kept, so activation
memory is ~2·s·b·h bytes per layer (16-bit) plus one live block, at the cost of a second forward (~+33% compute).

`"selective"` is torchtitan's op-level selective activation checkpointing (`selective_ac_option: op`): inside
each block the outputs of the expensive ops are kept (attention, and every other matrix multiply), the cheap
element-wise ops (norms, activations, RoPE, residual adds) and the other half of the matmuls are recomputed.
It keeps most of full checkpointing's saving for a fraction of its extra compute. The block structure comes
from transformers (`GradientCheckpointingLayer`): each decoder layer is one checkpoint region, non-reentrant
(`use_reentrant=False`, the variant that composes with FSDP2 and torch.compile).

Both recompute exactly what the forward computed (same ops, same inputs), so losses and gradients are those
of training without checkpointing (tests/train/test_activation_checkpointing.py; memory:
bench/activation_checkpointing.py).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

_aten = torch.ops.aten
# torchtitan's save list (torchtitan/distributed/activation_checkpoint.py), with the CPU attention kernel and
# addmm (a Linear with a bias) added: outputs of these ops are kept, everything else is recomputed
SAVED_OPS = {
    _aten.mm.default,
    _aten.addmm.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
    _aten.max.default,
}
_MATMULS = {_aten.mm.default, _aten.addmm.default}


def op_policy():
    """torchtitan's policy for one block: save the listed ops' outputs except every second matmul (counted
    separately in the forward and in the recompute, so both make the same choices)."""
    counts: dict[str, int] = defaultdict(int)

    def policy(ctx, func, *args, **kwargs):
        mode = "recompute" if ctx.is_recompute else "forward"
        if func in _MATMULS:
            counts[mode] += 1
            if counts[mode] % 2 == 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if func in SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def selective_context():
    """A fresh policy per checkpointed block (`context_fn` of torch.utils.checkpoint)."""
    return create_selective_checkpoint_contexts(op_policy())


def apply_activation_checkpointing(model: torch.nn.Module, mode: bool | str) -> None:
    """Checkpoint every decoder block of a transformers model: `True` (full) or `"selective"`; False: nothing."""
    if not mode:
        return
    kwargs: dict = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context
    model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)

"""The global gradient L2 norm, and clipping to it, over parameters that live on different meshes.

torch's `clip_grad_norm_` stacks the per-tensor norms, which fails on a mix of plain tensors and DTensors
(tensor parallel leaves norm gains whole: "got mixed torch.Tensor and DTensor") and on DTensors of different
meshes (FSDP x TP: 2-D matrices, 1-D norm gains). So the gradients are grouped by (mesh, placements), each
group's norm is taken by torch's own `get_total_norm` and made whole, and the groups combine as sqrt(sum n^2).
On one process there is one group of plain tensors, and this is exactly what `clip_grad_norm_` computes.
A tensor-parallel peer's replicated gradient is reduced already and identical on every TP rank: counted once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so their global L2 norm is at most `max_norm` (inf: measure only); returns the norm."""
    params = [p for p in parameters if p.grad is not None]
    groups: dict[object, list[torch.nn.Parameter]] = {}
    for p in params:
        mesh = getattr(p.grad, "device_mesh", None)
        key = (mesh, p.grad.placements) if mesh is not None else None
        groups.setdefault(key, []).append(p)
    norms = []
    for group in groups.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in group], 2.0)
        norms.append(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    if not norms:
        return torch.zeros(())
    total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    for group in groups.values():  # scaling refuses a mix of meshes as well: group by group
        torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total

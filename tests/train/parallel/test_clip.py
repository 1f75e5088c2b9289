"""The global grad norm over parameters on different meshes equals the plain norm; on one process it is torch's."""

from __future__ import annotations

import pytest
import torch

from pretrain.train.parallel.clip import clip_grad_norm_


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=g)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


@pytest.mark.parametrize("max_norm", [0.5, float("inf")])
def test_one_process_is_exactly_torchs_clip(max_norm):
    ours, theirs = _params(0), _params(0)
    norm = clip_grad_norm_(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert torch.equal(norm, expected)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs))


def _on_meshes(params: list[torch.nn.Parameter], meshes) -> list[torch.nn.Parameter]:
    """The first parameters (and grads) made DTensors on `meshes`, one each; the rest stay plain."""
    from torch.distributed.tensor import DTensor, Replicate

    for p, mesh in zip(params, meshes):
        placements = [Replicate()] * mesh.ndim
        p.data = DTensor.from_local(p.data, mesh, placements)
        p.grad = DTensor.from_local(p.grad, mesh, placements)
    return params


def test_plain_tensors_and_dtensors_of_two_meshes_clip_as_one_set(two_meshes):
    """What FSDP x TP leaves: matrices on a 2-D mesh, norm gains on a 1-D one, maybe plain tensors (TP alone)."""
    with pytest.raises(Exception, match="mixed torch.Tensor and DTensor|same mesh"):
        torch.nn.utils.clip_grad_norm_(_on_meshes(_params(1), two_meshes), 0.5)  # why the grouping exists
    plain, mixed = _params(1), _on_meshes(_params(1), two_meshes)
    norm = clip_grad_norm_(mixed, 0.5)
    expected = torch.nn.utils.clip_grad_norm_(plain, 0.5)
    assert norm.item() == pytest.approx(expected.item(), rel=1e-6) and norm.item() > 0.5
    for p, q in zip(mixed, plain):
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        torch.testing.assert_close(grad, q.grad)

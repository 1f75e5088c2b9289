"""Optimizer groups are split by how their parameters lie on the mesh (fused/foreach kernels take one layout)."""

from __future__ import annotations

import torch

from pretrain.train.optim import by_layout


def test_plain_groups_are_kept_whole():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    groups = [{"params": [a, b], "weight_decay": 0.1}, {"params": [], "weight_decay": 0.0}]
    assert by_layout(groups) == groups


def test_dtensors_of_two_meshes_and_plain_tensors_get_a_group_each(two_meshes):
    from torch.distributed.tensor import DTensor, Replicate

    mesh_1d, mesh_2d = two_meshes
    plain = torch.nn.Parameter(torch.ones(2))
    one = torch.nn.Parameter(DTensor.from_local(torch.ones(2), mesh_1d, [Replicate()]))
    two = torch.nn.Parameter(DTensor.from_local(torch.ones(2), mesh_2d, [Replicate(), Replicate()]))
    other_two = torch.nn.Parameter(DTensor.from_local(torch.ones(3), mesh_2d, [Replicate(), Replicate()]))
    split = by_layout([{"params": [plain, one, two, other_two], "lr": 0.5}])
    assert [[id(p) for p in g["params"]] for g in split] == [[id(plain)], [id(one)], [id(two), id(other_two)]]
    assert all(g["lr"] == 0.5 for g in split)
    opt = torch.optim.AdamW(split, fused=True)  # one mixed group: "got mixed torch.Tensor and DTensor"
    for p in (plain, one, two, other_two):
        p.grad = torch.ones_like(p)
    opt.step()

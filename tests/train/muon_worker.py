"""Ranks of the DistributedMuon tests, run by tests/train/test_muon.py under torchrun (gloo, CPU).

muon_worker.py SIZE            FSDP2 (Shard(0)) and HSDP ((Replicate, Shard(0)) on a 1 x W mesh) shards of
                               matrices with uneven and empty shards (SIZE: `small` ones, 3 steps, or the
                               tiny model's, 6 steps): bit for bit torch.optim.Muon on the whole matrices,
                               momentum a DTensor placed like its parameter
(muon_checkpoint_worker.py: the optimizer's sharded checkpoint; this one imports torch and the optimizer only)
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from pretrain.train.muon import DistributedMuon
from pretrain.train.newton_schulz import shard_rows

SHAPES = [(128, 128)] * 5 + [(384, 128)] * 3 + [(128, 384)] * 2 + [(201, 96), (5, 3), (1, 4), (7, 7), (2, 9)]
# the same mix of square, tall, wide, uneven (21 rows: 11 + 10) and empty shards, cheap enough for the default suite
SMALL_SHAPES = [(16, 16)] * 5 + [(24, 8)] * 3 + [(8, 24)] * 2 + [(21, 12), (5, 3), (1, 4), (7, 7), (2, 9)]


def groups(params: list) -> list[dict]:
    return [
        {"params": params[:8]},
        {"params": params[8:12], "nesterov": False, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.3},
        {"params": params[12:], "momentum": 0.9, "lr": 0.05},
    ]


def matrices(size: str) -> None:
    shapes, steps = (SMALL_SHAPES, 3) if size == "small" else (SHAPES, 6)
    world, rank = dist.get_world_size(), dist.get_rank()
    layouts = {
        "fsdp2": (init_device_mesh("cpu", (world,)), [Shard(0)]),
        "hsdp": (init_device_mesh("cpu", (1, world)), [Replicate(), Shard(0)]),
    }
    for name, (mesh, placements) in layouts.items():
        torch.manual_seed(0)
        ref = [torch.randn(s) for s in shapes]
        ours = [distribute_tensor(p.clone(), mesh, placements) for p in ref]
        for p in ours:
            assert p.to_local().shape[0] == shard_rows(p.shape[0], world)[rank]
        opt_ref = torch.optim.Muon(groups(ref), lr=0.02, weight_decay=0.1)
        square = shapes[0][0] * shapes[0][1]
        opt = DistributedMuon(
            groups(ours), lr=0.02, weight_decay=0.1, bucket_numel=3 * square * world
        )  # 2 rounds
        for _ in range(steps):
            for a, b in zip(ref, ours):
                a.grad = torch.randn_like(a)
                b.grad = distribute_tensor(a.grad.clone(), mesh, placements)
            opt_ref.step()
            opt.step()
        for a, b in zip(ref, ours):
            assert torch.equal(a, b.full_tensor()), (name, tuple(a.shape), (a - b.full_tensor()).abs().max())
            buf = opt.state[b]["momentum_buffer"]
            assert isinstance(buf, DTensor) and buf.placements == b.placements, name
            assert torch.equal(opt_ref.state[a]["momentum_buffer"], buf.full_tensor()), name


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        matrices(sys.argv[1])
    finally:
        dist.destroy_process_group()

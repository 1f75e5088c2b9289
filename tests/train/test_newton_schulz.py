"""Newton-Schulz batched over same-shape matrices is torch.optim.Muon's per-matrix result bit for bit, and the
matrices are shared out among ranks by shape and cost, the same on every rank."""

from __future__ import annotations

import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz

from pretrain.train.newton_schulz import (
    NS_COEFFICIENTS,
    assign_owners,
    newton_schulz_cost,
    plan_buckets,
    shard_rows,
    zeropower_via_newtonschulz,
)


def test_batched_newton_schulz_is_torch_bit_for_bit():
    torch.manual_seed(0)
    # square, tall and wide (transposed), odd, tiny; the tiny model's shapes: bench/muon_newton_schulz.py
    for shape in [(64, 64), (96, 32), (32, 96), (51, 24), (1, 4), (5, 3)]:
        for dtype in (torch.float32, torch.bfloat16):
            stack = torch.randn(3, *shape).to(dtype)
            want = torch.stack([torch_newton_schulz(x.clone(), NS_COEFFICIENTS, 5, 1e-7) for x in stack])
            assert torch.equal(zeropower_via_newtonschulz(stack), want), (shape, dtype)
            assert torch.equal(zeropower_via_newtonschulz(stack[0]), want[0])


def test_shard_rows_are_torch_chunks():
    assert shard_rows(201, 2) == [101, 100]
    assert shard_rows(5, 4) == [2, 2, 1, 0]
    for rows in range(1, 20):
        for world in range(1, 6):
            chunks = [len(c) for c in torch.arange(rows).chunk(world)]
            assert shard_rows(rows, world) == chunks + [0] * (world - len(chunks))


def test_owners_balance_the_cost_and_go_round_robin_within_a_shape():
    shapes = [(128, 384)] * 8 + [(128, 128)] * 12
    owners = assign_owners(shapes, 4)
    load = [sum(newton_schulz_cost(s) for s, o in zip(shapes, owners) if o == r) for r in range(4)]
    assert max(load) == min(load)
    assert owners[:8] == [0, 1, 2, 3] * 2


def test_plain_tensors_make_one_local_bucket_per_shape():
    params = [torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(2, 5)]
    group = {"ns_coefficients": NS_COEFFICIENTS, "ns_steps": 5, "eps": 1e-7}
    buckets = plan_buckets(params, [group] * 3, bucket_numel=1 << 20)
    assert [(b.shape, len(b.params), b.group) for b in buckets] == [((4, 3), 2, None), ((2, 5), 1, None)]

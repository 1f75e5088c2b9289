"""Newton-Schulz orthogonalisation as torch.optim.Muon does it, batched over same-shape matrices, and how
`DistributedMuon` (train/muon.py) shares the matrices out among FSDP2 ranks (owners, buckets, shard layouts).

    zeropower_via_newtonschulz(stack)          # [k, rows, cols] -> orthogonalised, bit for bit torch's per-matrix
    assign_owners(shapes, world)               # the rank that orthogonalises each matrix
    shard_rows(rows, world)                    # FSDP2's dim-0 split (torch.chunk)

Stacking same-shape matrices into one `bmm` / `baddbmm` stack makes 3 x 5 matmul calls per shape instead of
per matrix (on CPU at 2 threads each call is an OpenMP fork/join; on GPU a kernel launch), with the same
arithmetic: batched and per-matrix bf16 matmuls agree bit for bit on CPU (tests/train/test_newton_schulz.py;
bench/muon_newton_schulz.py times them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate, Shard

NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
EPS = 1e-7
# the most elements (whole matrices, summed over ranks) one exchange bucket may hold; bigger shape groups are
# split into rounds, so the owners' receive buffers stay bounded and later rounds overlap earlier iterations
DEFAULT_BUCKET_NUMEL = 1 << 26


def zeropower_via_newtonschulz(
    x: Tensor,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    ns_steps: int = NS_STEPS,
    eps: float = EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Orthogonalise a matrix, or a stack of same-shape matrices (`[..., rows, cols]`), in `dtype`.

    The quintic Newton-Schulz of torch.optim.Muon (Keller Jordan's): the same operations, batched over the
    leading dims with `baddbmm`; with the default bf16, bit for bit torch's result. The input is not
    modified (torch's version divides its bf16 copy in place, which for a bf16 input is the input itself: a
    bf16 momentum buffer without Nesterov gets normalised). Returns `dtype`.
    """
    if x.ndim < 2:
        raise ValueError(f"Newton-Schulz needs a matrix or a stack of them, got shape {tuple(x.shape)}")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    a, b, c = ns_coefficients
    lead = x.shape[:-2]
    ortho = x.reshape(-1, *x.shape[-2:]).to(dtype)
    transpose = x.size(-2) > x.size(-1)
    if transpose:
        ortho = ortho.mT
    norm = torch.linalg.vector_norm(ortho, dim=(-2, -1), keepdim=True)
    ortho = ortho / norm.clamp(min=eps)
    for _ in range(ns_steps):
        gram = torch.bmm(ortho, ortho.mT)
        gram_update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        ortho = torch.baddbmm(ortho, gram_update, ortho, beta=a)
    if transpose:
        ortho = ortho.mT
    return ortho.reshape(*lead, *x.shape[-2:])


def adjust_lr(lr: float, adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """torch.optim.Muon's per-matrix lr: `original` sqrt(max(1, rows/cols)), `match_rms_adamw` 0.2*sqrt(max)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


def shard_rows(rows: int, world: int) -> list[int]:
    """Rows each rank holds of a dim-0 `Shard` over `world` ranks (torch.chunk: ceil-sized, trailing ones short
    or empty), as FSDP2 and DTensor split them."""
    chunk = -(-rows // world)
    return [max(0, min(chunk, rows - r * chunk)) for r in range(world)]


def newton_schulz_cost(shape: Sequence[int]) -> int:
    """Relative cost of orthogonalising a matrix: its iterations' matmuls scale with rows * cols * min."""
    rows, cols = shape[:2]
    return rows * cols * min(rows, cols)


def assign_owners(shapes: Sequence[Sequence[int]], world: int) -> list[int]:
    """The rank that orthogonalises each matrix: greedy longest-processing-time on the Newton-Schulz cost
    (biggest first, each to the least-loaded rank, ties to the lowest rank and the earliest matrix). Matrices
    of one shape go round-robin; remainders fill the least-loaded ranks. Deterministic: every rank computes
    the same owners from the same shapes."""
    load = [0] * world
    owners = [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: (-newton_schulz_cost(shapes[i]), i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owners[i] = r
        load[r] += newton_schulz_cost(shapes[i])
    return owners


@dataclass
class Bucket:
    """Same-shape matrices (same Newton-Schulz settings, same mesh) exchanged together, ordered by owner."""

    shape: tuple[int, int]
    ns: tuple[tuple[float, float, float], int, float]  # coefficients, steps, eps
    params: list[Tensor]
    counts: list[int]  # matrices each rank owns, in `params` order (owner 0's first)
    rows: list[int]  # rows of each matrix that each rank holds
    group: dist.ProcessGroup | None  # None: plain tensors, no exchange
    rank: int

    @property
    def local_rows(self) -> int:
        return self.rows[self.rank]


def shard_layout(p: Tensor) -> tuple[dist.ProcessGroup | None, int, int]:
    """(group, world, rank) a parameter's rows are split over: the shard dimension of an FSDP2 (`Shard(0)`)
    or HSDP (`Replicate(), Shard(0)`) DTensor; none for a plain tensor."""
    if not isinstance(p, DTensor):
        return None, 1, 0
    mesh, placements = p.device_mesh, tuple(p.placements)
    if placements == (Shard(0),):
        dim = 0
    elif placements == (Replicate(), Shard(0)):
        dim = 1  # HSDP: exchange within the shard group; every replica computes the same update
    else:
        raise NotImplementedError(
            f"DistributedMuon takes plain tensors and FSDP2 / HSDP shards (dim 0), not placements "
            f"{placements} on a {mesh.ndim}-D mesh (tensor parallel)"
        )
    if mesh.size(dim) == 1:
        return None, 1, 0
    return mesh.get_group(dim), mesh.size(dim), mesh.get_local_rank(dim)


def plan_buckets(params: list[Tensor], groups: list[dict], bucket_numel: int) -> list[Bucket]:
    """Owners and buckets for these parameters (same shape and Newton-Schulz settings, in rounds of at most
    `bucket_numel` elements); the same on every rank, as it depends on shapes and order only."""
    # layouts: one per distinct process group (plain tensors: None)
    by_layout: dict[int | None, list[int]] = {}
    layouts: dict[int | None, tuple[dist.ProcessGroup | None, int, int]] = {}
    for i, p in enumerate(params):
        group, world, rank = shard_layout(p)
        lid = None if group is None else id(group)
        layouts[lid] = (group, world, rank)
        by_layout.setdefault(lid, []).append(i)
    buckets: list[Bucket] = []
    for lid, idx in by_layout.items():
        group, world, rank = layouts[lid]
        owner = dict(zip(idx, assign_owners([tuple(params[i].shape) for i in idx], world)))
        # buckets: same shape and Newton-Schulz settings, in rounds of at most bucket_numel elements
        shapes: dict[tuple, list[int]] = {}
        for i in idx:
            g = groups[i]
            ns = (tuple(g["ns_coefficients"]), int(g["ns_steps"]), float(g["eps"]))
            shapes.setdefault((tuple(params[i].shape), ns), []).append(i)
        for (shape, ns), members in shapes.items():
            per_owner = [[i for i in members if owner[i] == r] for r in range(world)]
            per_round = max(1, bucket_numel // (world * shape[0] * shape[1]))
            rounds = -(-max(len(m) for m in per_owner) // per_round)
            for k in range(rounds):
                chunk = [m[k * per_round : (k + 1) * per_round] for m in per_owner]
                buckets.append(
                    Bucket(
                        shape=shape,
                        ns=ns,
                        params=[params[i] for m in chunk for i in m],
                        counts=[len(m) for m in chunk],
                        rows=shard_rows(shape[0], world),
                        group=group,
                        rank=rank,
                    )
                )
    for b in buckets:
        for p in b.params:
            local = p.to_local() if isinstance(p, DTensor) else p
            if local.shape[0] != b.local_rows:
                raise RuntimeError(
                    f"a shard of a {b.shape} matrix has {local.shape[0]} rows on rank {b.rank}, expected "
                    f"{b.local_rows} (torch.chunk split); DistributedMuon assumes FSDP2's even dim-0 split"
                )
    return buckets

"""Muon for FSDP2: each sharded matrix orthogonalised whole on one owner rank, same-shape matrices as one stack.

`torch.optim.Muon` orthogonalises each whole weight matrix; under FSDP2 no rank holds one. `DistributedMuon`
keeps the momentum sharded like the parameter and, each step: (1) forms the momentum / Nesterov update on each
rank's own rows (fp32, packed as bf16: Newton-Schulz starts by casting to bf16, so nothing is lost); (2) gives
every matrix an owner (greedy longest-processing-time on the Newton-Schulz cost, the same on every rank) and
brings each owner its whole matrices with one `all_to_all_single` per bucket of same-shape matrices (uneven and
empty FSDP shards are just split sizes); (3) each owner runs one batched Newton-Schulz per stack
(train/newton_schulz.py); (4) a second `all_to_all_single` returns every rank its rows, and each rank applies
weight decay and the update to its shard. The exchanges are asynchronous, so they overlap the iterations.

The arithmetic is torch.optim.Muon's operation for operation (momentum lerp, bf16 quintic Newton-Schulz,
`param *= 1 - lr * wd`, `param -= adjust_lr(lr, shape) * update`): on one process it is torch's result bit
for bit, and a 2-rank FSDP2 run gives the 1-process losses to the fp32 noise of the gradient reduction order
(tests/train/test_muon.py). Plain tensors (one process, replicas) are orthogonalised locally, still stacked.
HSDP (replicas of shard groups, placements (Replicate, Shard(0))) exchanges within each shard group and every
replica computes the same update. Tensor-parallel slices are refused (config/checks.py says so before a run).
The param groups and `momentum_buffer` state have torch.optim.Muon's layout, so DCP saves and reshards them
and checkpoints move between this optimizer and torch's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

from pretrain.train.newton_schulz import (
    DEFAULT_BUCKET_NUMEL,
    EPS,
    NS_COEFFICIENTS,
    NS_STEPS,
    Bucket,
    adjust_lr,
    plan_buckets,
    zeropower_via_newtonschulz,
)


def _scalar(x: float | Tensor) -> float:
    return x.item() if isinstance(x, Tensor) else x


@dataclass
class _Pending:
    """A step in flight: per bucket, the exchange handles and buffers that must live until they are waited."""

    buckets: list[Bucket]
    group_of: dict[int, dict]  # id(param) -> its param group
    send: list[Tensor] = field(default_factory=list)
    recv: list[Tensor] = field(default_factory=list)
    works: list[dist.Work | None] = field(default_factory=list)


class DistributedMuon(torch.optim.Optimizer):
    """torch.optim.Muon for FSDP2 / HSDP-sharded (dim 0) matrices: one owner rank per matrix.

    Args mirror `torch.optim.Muon` (same defaults, same param group keys). Keyword-only extras, not saved in
    the param groups (so checkpoints stay torch.optim.Muon's):

    - `bucket_numel`: the most elements (whole matrices over all ranks) exchanged and orthogonalised in one
      bucket; bigger same-shape groups go in rounds.
    - `ns_dtype`: the dtype Newton-Schulz runs in and the rows travel in. bf16 (default) is torch's math;
      fp32 is more exact and, on CPUs without bf16 matmul units, ~4x faster, at twice the bytes.

    `step()` is a collective under FSDP2. To overlap the exchanges with other work (the AdamW step),
    call `handle = step_begin()`, do the work, then `step_finish(handle)`.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        bucket_numel: int = DEFAULT_BUCKET_NUMEL,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if not 0.0 <= _scalar(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters, got one of size {tuple(p.size())}")
        self.bucket_numel = bucket_numel
        self.ns_dtype = ns_dtype
        # the plan is built at the first step (accelerate swaps the params for DTensors after construction)
        # and rebuilt when the parameters with gradients, or their Newton-Schulz settings, change
        self._plan_key: tuple | None = None
        self._buckets: list[Bucket] = []

    # ---------------------------------------------------------------- planning

    def _plan(self, params: list[Tensor], groups: list[dict]) -> list[Bucket]:
        """Owners and buckets (the same on every rank), rebuilt only when the parameters or settings change."""
        key = tuple(
            (id(p), tuple(g["ns_coefficients"]), g["ns_steps"], g["eps"]) for p, g in zip(params, groups)
        )
        if key != self._plan_key:
            self._plan_key, self._buckets = key, plan_buckets(params, groups, self.bucket_numel)
        return self._buckets

    # ---------------------------------------------------------------- step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Muon step over every parameter that has a gradient (a collective under FSDP2: all ranks call it)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.step_finish(self.step_begin())
        return loss

    @torch.no_grad()
    def step_begin(self) -> _Pending | None:
        """Momentum and updates on each rank's rows; the owners' exchanges issued (asynchronously)."""
        params: list[Tensor] = []
        groups: list[dict] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if torch.is_complex(p):
                    raise RuntimeError("Muon does not support complex parameters")
                if p.grad.is_sparse:
                    raise RuntimeError("Muon does not support sparse gradients")
                params.append(p)
                groups.append(group)
        if not params:
            return None
        pending = _Pending(self._plan(params, groups), {id(p): g for p, g in zip(params, groups)})
        for b in pending.buckets:
            cols = b.shape[1]
            send = torch.empty(
                len(b.params), b.local_rows, cols, dtype=self.ns_dtype, device=b.params[0].device
            )
            for j, p in enumerate(b.params):
                send[j].copy_(self._local_update(p, pending.group_of[id(p)]))
            pending.send.append(send)
            if b.group is None:
                pending.recv.append(send)
                pending.works.append(None)
                continue
            own = b.counts[b.rank]
            recv = torch.empty(own * b.shape[0] * cols, dtype=self.ns_dtype, device=send.device)
            pending.recv.append(recv)
            pending.works.append(
                dist.all_to_all_single(
                    recv,
                    send.view(-1),
                    output_split_sizes=[own * r * cols for r in b.rows],
                    input_split_sizes=[n * b.local_rows * cols for n in b.counts],
                    group=b.group,
                    async_op=True,
                )
            )
        return pending

    def _local_update(self, p: Tensor, group: dict) -> Tensor:
        """torch.optim.Muon's momentum and Nesterov update, on this rank's rows (fp32, before Newton-Schulz)."""
        grad = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf = buf.to_local() if isinstance(buf, DTensor) else buf
        momentum = group["momentum"]
        buf.lerp_(grad, 1 - momentum)
        return grad.lerp(buf, momentum) if group["nesterov"] else buf

    @torch.no_grad()
    def step_finish(self, pending: _Pending | None) -> None:
        """Newton-Schulz on each owner's stacks, the rows sent back, weight decay and updates applied."""
        if pending is None:
            return
        # (this rank's rows of the orthogonalised updates, the return exchange, its send buffer kept alive)
        back: list[tuple[Tensor, dist.Work | None, Tensor | None]] = []
        for b, recv, work in zip(pending.buckets, pending.recv, pending.works):
            cols = b.shape[1]
            if b.group is None:
                back.append((zeropower_via_newtonschulz(recv, *b.ns, dtype=self.ns_dtype), None, None))
                continue
            work.wait()
            own = b.counts[b.rank]
            if own:
                # recv holds, per source rank, that rank's rows of each matrix this rank owns
                parts = recv.split([own * r * cols for r in b.rows])
                full = torch.cat([part.view(own, r, cols) for part, r in zip(parts, b.rows)], dim=1)
                ortho = zeropower_via_newtonschulz(full, *b.ns, dtype=self.ns_dtype)
                out = torch.cat([chunk.reshape(-1) for chunk in ortho.split(b.rows, dim=1)])
            else:
                out = recv  # empty
            ret = torch.empty(len(b.params) * b.local_rows * cols, dtype=self.ns_dtype, device=recv.device)
            work = dist.all_to_all_single(
                ret,
                out,
                output_split_sizes=[n * b.local_rows * cols for n in b.counts],
                input_split_sizes=[own * r * cols for r in b.rows],
                group=b.group,
                async_op=True,
            )
            back.append((ret, work, out))
        for b, (ret, work, _) in zip(pending.buckets, back):
            if work is not None:
                work.wait()
            updates = ret.view(len(b.params), b.local_rows, b.shape[1])
            for p, update in zip(b.params, updates):
                group = pending.group_of[id(p)]
                lr = _scalar(group["lr"])
                local = p.to_local() if isinstance(p, DTensor) else p
                local.mul_(1 - lr * group["weight_decay"])
                local.add_(update, alpha=-adjust_lr(lr, group["adjust_lr_fn"], p.shape))

"""One optimizer step: forward/backward over the micro batches, all-reduce, clip — no update yet.

This is the exact code path `pretrain train` runs; `bench/train_throughput.py` imports it too, so
the benchmark measures what users get. The caller decides (spike guard) whether to apply the update.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from pretrain.train.fused_loss import IGNORE_INDEX, FusedHead
from pretrain.train.moe import RouterStats
from pretrain.train.parallel.clip import clip_grad_norm_
from pretrain.train.parallel.mesh import Parallelism
from pretrain.train.parallel.parallelize import local_value, loss_context, no_gradient_sync


def _output(model, batch: dict[str, torch.Tensor], router: RouterStats | None = None) -> torch.Tensor:
    """The model's `logits` output (the final hidden states while a FusedHead is bypassed). With `router` (a
    mixture of experts) the model also returns its router outputs, which `router` takes in."""
    kwargs = {"input_ids": batch["input_ids"]}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    if router is not None:
        kwargs["output_router_logits"] = True
    out = model(**kwargs, use_cache=False)
    if router is not None:
        router.pending = router.objective_term(out)
    return out.logits


def _logits(model, batch: dict[str, torch.Tensor], router: RouterStats | None = None) -> torch.Tensor:
    logits = _output(model, batch, router)
    return logits.float().reshape(-1, logits.size(-1))


def causal_lm_loss(model, batch: dict[str, torch.Tensor], router: RouterStats | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy; labels are already shifted by the loader (no padding in packed data)."""
    return F.cross_entropy(_logits(model, batch, router), batch["labels"].reshape(-1))


def causal_lm_losses(
    model, batch: dict[str, torch.Tensor], router: RouterStats | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, mean z-loss): the z-loss is logsumexp(logits)^2 per token (PaLM), which is
    zero only when the softmax normaliser is 1, so it keeps the output logits from drifting large. Both
    are means over the tokens whose label is not -100."""
    logits = _logits(model, batch, router)
    labels = batch["labels"].reshape(-1)
    counted = labels != IGNORE_INDEX  # the tokens cross-entropy averages over (packed data: all of them)
    z = (torch.logsumexp(logits, dim=-1).pow(2) * counted).sum() / counted.sum().clamp(min=1)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX), z


def fused_losses(
    model,
    batch: dict[str, torch.Tensor],
    head: FusedHead,
    z_loss: float = 0.0,
    router: RouterStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, mean cross-entropy, mean z-loss) with the LM head fused into the loss: the forward still
    goes through `model` (DDP's hooks included), which returns the final hidden states while `head` is
    bypassed. Only the objective (ce + z_loss * z) is differentiable."""
    with head.bypassed():
        hidden = _output(model, batch, router)
    return head.losses(hidden, batch["labels"], z_loss)


def forward_backward(
    model,
    batches: Iterator[dict],
    accum: int,
    accelerator,
    fault=None,
    z_loss: float = 0.0,
    fused_head: FusedHead | None = None,
    parallelism: Parallelism | None = None,
    router: RouterStats | None = None,
) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """Accumulate gradients over `accum` micro batches.

    Returns (mean cross-entropy across ranks, data-wait seconds, mean z-loss across ranks or None). With
    `z_loss` > 0 the gradient is that of cross-entropy + z_loss * z-loss; the cross-entropy is what is
    reported (and guarded against spikes), so losses stay comparable with and without it. With `fused_head`
    (`train.fused_cross_entropy`) the head and the loss run fused; a fault then transforms the whole objective
    (z-loss included) and the reported cross-entropy alike. `parallelism` (the run's mesh; None for a plain
    module): gradients are reduced on the last micro batch only, and the loss may run on vocab shards. With
    `router` (a mixture of experts) each micro
    batch's objective also carries the router's weighted losses (train/moe.py), and `router` ends with their
    means and the experts' load over micro batches and ranks; the reported loss stays the cross-entropy.
    """
    total = torch.zeros((), device=accelerator.device)
    total_z = torch.zeros((), device=accelerator.device) if z_loss else None
    data_wait = 0.0
    for i in range(accum):
        t0 = time.perf_counter()
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(batches).items()}
        data_wait += time.perf_counter() - t0
        last = i == accum - 1
        sync = (
            contextlib.nullcontext() if last or parallelism is None else no_gradient_sync(model, parallelism)
        )
        with sync, loss_context(parallelism), accelerator.autocast():
            if fused_head is not None:
                objective, loss, z = fused_losses(model, batch, fused_head, z_loss, router)
                if router is not None:
                    objective = objective + router.pending
                if fault is not None:
                    objective, loss = fault(objective), fault(loss)
            else:
                if z_loss:
                    loss, z = causal_lm_losses(model, batch, router)
                else:
                    loss = causal_lm_loss(model, batch, router)
                if fault is not None:
                    loss = fault(loss)
                # without z-loss this is exactly the plain cross-entropy path
                objective = loss + z_loss * z if z_loss else loss
                if router is not None:
                    objective = objective + router.pending
            if z_loss:
                total_z += z.detach()
            (objective / accum).backward()
        total += local_value(loss.detach())
    if router is not None:
        router.finish(accelerator)
    mean = accelerator.reduce(total / accum, reduction="mean")
    mean_z = accelerator.reduce(total_z / accum, reduction="mean") if total_z is not None else None
    return mean, data_wait, mean_z


def clip_gradients(model, max_norm: float | None) -> float:
    """Clip to `max_norm` (or just measure with inf) and return the global grad norm (over every mesh)."""
    return float(clip_grad_norm_(model.parameters(), max_norm if max_norm else float("inf")))

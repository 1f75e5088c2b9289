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


def _logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    kwargs = {"input_ids": batch["input_ids"]}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    logits = model(**kwargs, use_cache=False).logits
    return logits.float().reshape(-1, logits.size(-1))


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy; labels are already shifted by the loader (no padding in packed data)."""
    return F.cross_entropy(_logits(model, batch), batch["labels"].reshape(-1))


def causal_lm_losses(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, mean z-loss): the z-loss is logsumexp(logits)^2 per token (PaLM), which is
    zero only when the softmax normaliser is 1, so it keeps the output logits from drifting large."""
    logits = _logits(model, batch)
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    return F.cross_entropy(logits, batch["labels"].reshape(-1)), z


def forward_backward(
    model, batches: Iterator[dict], accum: int, accelerator, fault=None, z_loss: float = 0.0
) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """Accumulate gradients over `accum` micro batches.

    Returns (mean cross-entropy across ranks, data-wait seconds, mean z-loss across ranks or None). With
    `z_loss` > 0 the gradient is that of cross-entropy + z_loss * z-loss; the cross-entropy is what is
    reported (and guarded against spikes), so losses stay comparable with and without it.
    """
    total = torch.zeros((), device=accelerator.device)
    total_z = torch.zeros((), device=accelerator.device) if z_loss else None
    data_wait = 0.0
    for i in range(accum):
        t0 = time.perf_counter()
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(batches).items()}
        data_wait += time.perf_counter() - t0
        sync = contextlib.nullcontext() if i == accum - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            if z_loss:
                loss, z = causal_lm_losses(model, batch)
                total_z += z.detach()
            else:
                loss = causal_lm_loss(model, batch)
            if fault is not None:
                loss = fault(loss)
            # without z-loss this is exactly the plain cross-entropy path
            objective = loss + z_loss * z if z_loss else loss
            accelerator.backward(objective / accum)
        total += loss.detach()
    mean = accelerator.reduce(total / accum, reduction="mean")
    mean_z = accelerator.reduce(total_z / accum, reduction="mean") if total_z is not None else None
    return mean, data_wait, mean_z


def clip_gradients(model, accelerator, max_norm: float | None) -> float:
    """Clip to `max_norm` (or just measure with inf) and return the global grad norm."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm if max_norm else float("inf"))
    return float(norm)

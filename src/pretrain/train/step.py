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


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy; labels are already shifted by the loader (no padding in packed data)."""
    kwargs = {"input_ids": batch["input_ids"]}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
    logits = model(**kwargs, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch["labels"].reshape(-1))


def forward_backward(
    model, batches: Iterator[dict], accum: int, accelerator, fault=None
) -> tuple[torch.Tensor, float]:
    """Accumulate gradients over `accum` micro batches; returns (mean loss across ranks, data-wait seconds)."""
    total = torch.zeros((), device=accelerator.device)
    data_wait = 0.0
    for i in range(accum):
        t0 = time.perf_counter()
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(batches).items()}
        data_wait += time.perf_counter() - t0
        sync = contextlib.nullcontext() if i == accum - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            loss = causal_lm_loss(model, batch)
            if fault is not None:
                loss = fault(loss)
            accelerator.backward(loss / accum)
        total += loss.detach()
    mean = accelerator.reduce(total / accum, reduction="mean")
    return mean, data_wait


def clip_gradients(model, accelerator, max_norm: float | None) -> float:
    """Clip to `max_norm` (or just measure with inf) and return the global grad norm."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm if max_norm else float("inf"))
    return float(norm)

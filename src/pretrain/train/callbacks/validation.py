"""Held-out validation on the loop: mean loss over `train.validation.batches` val micro batches, and bits per byte.

Runs on every rank (each reads its own slice of the val split; the loss is averaged across ranks) at
each `train.validation.every_fraction` of training.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

from pretrain.tokens.loader import TokenLoader
from pretrain.train.callbacks.base import Callback, StepOutput, fraction_steps
from pretrain.train.metrics import MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState
from pretrain.train.step import causal_lm_loss


@torch.no_grad()
def summed_val_loss(
    model, val: TokenLoader, batches: int, device: torch.device, autocast=contextlib.nullcontext
) -> tuple[torch.Tensor, int]:
    """(sum of the per-batch mean losses, batches read) over the first `batches` val micro batches."""
    total, n = torch.zeros((), device=device), 0
    for i, batch in enumerate(val):
        if i >= batches:
            break
        with autocast():
            total += causal_lm_loss(model, {k: v.to(device) for k, v in batch.items()})
        n += 1
    return total, n


def bits_per_byte(loss: float, val: TokenLoader) -> float | None:
    """Mean loss (nats/token) in bits per byte of the val split's text."""
    bytes_per_token = val.manifest.splits["val"].bytes_per_token
    return loss / math.log(2) / bytes_per_token if bytes_per_token else None


@torch.no_grad()
def validate(setup: TrainSetup) -> dict:
    """The `val/...` values of a validation record; the model is back in train mode afterwards."""
    recipe, acc, model = setup.recipe, setup.accelerator, setup.model
    cfg = recipe.train
    start = time.perf_counter()
    val = TokenLoader(
        recipe.layout.tokens,
        "val",
        cfg.seq_len,
        cfg.micro_batch_size,
        acc.process_index,
        acc.num_processes,
        document_positions=cfg.document_masking,
    )
    model.eval()
    total, n = summed_val_loss(model, val, cfg.validation.batches, setup.device, acc.autocast)
    model.train()
    loss = float(acc.reduce(total / max(n, 1), reduction="mean"))
    bpb = bits_per_byte(loss, val)
    seconds = round(time.perf_counter() - start, 3)  # counted as evaluation overhead by the bench
    return {
        "val/loss": round(loss, 5),
        "val/bpb": round(bpb, 5) if bpb else None,
        "val/batches": n,
        "val/seconds": seconds,
    }


class Validation(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        self.steps = fraction_steps(setup.total_steps, setup.recipe.train.validation.every_fraction, None)

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if state.step in self.steps:
            self.metrics.log_validation(state.step, state.tokens_seen, validate(self.setup))

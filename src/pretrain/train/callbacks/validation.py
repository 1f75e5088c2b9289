"""Held-out validation on the loop: mean loss over `train.validation.batches` val micro batches, and bits per byte.

Runs on every rank (each reads its own slice of the val split; the loss is averaged across ranks) at
each `train.validation.every_fraction` of training; one console line per pass on the main process.
"""

from __future__ import annotations

import contextlib
import itertools
import time

import torch

from pretrain.core.progress import get_logger
from pretrain.evaluation.metrics import bits_per_byte
from pretrain.tokens.loader import TokenLoader
from pretrain.train.callbacks.base import Callback, StepOutput, fraction_steps
from pretrain.train.fused_loss import FusedHead
from pretrain.train.metrics import MetricsLog
from pretrain.train.parallel.mesh import Parallelism
from pretrain.train.parallel.parallelize import local_value, loss_context
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState
from pretrain.train.step import causal_lm_loss, fused_losses

log = get_logger("pretrain.train")


@torch.no_grad()
def summed_val_loss(
    model,
    batches,
    device: torch.device,
    autocast=contextlib.nullcontext,
    fused_head: FusedHead | None = None,
    parallelism: Parallelism | None = None,
) -> tuple[torch.Tensor, int]:
    """(sum of the per-batch mean losses, number of batches) over `batches` (micro batches of the val split).

    With the training's `fused_head` the loss is computed chunk by chunk as in training (no gradients under
    no_grad): the val split's full logits are never materialised."""
    total, n = torch.zeros((), device=device), 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(), loss_context(parallelism):
            loss = fused_losses(model, batch, fused_head)[1] if fused_head else causal_lm_loss(model, batch)
        total += local_value(loss)
        n += 1
    return total, n


def validation_batches(setup: TrainSetup) -> tuple[list[dict[str, torch.Tensor]], float | None]:
    """This rank's val micro batches (at most `train.validation.batches`, on the device) and the val split's
    bytes per token. The val split is read in order and never changes, so the loop reads it once."""
    recipe, par = setup.recipe, setup.parallelism
    cfg = recipe.train
    val = TokenLoader(
        recipe.layout.tokens,
        "val",
        cfg.seq_len,
        cfg.micro_batch_size,
        par.data_rank,
        par.data_world,
        document_positions=cfg.document_masking,
    )
    batches = [
        {k: v.to(setup.device) for k, v in b.items()} for b in itertools.islice(val, cfg.validation.batches)
    ]
    return batches, val.manifest.splits["val"].bytes_per_token


@torch.no_grad()
def validate(setup: TrainSetup, batches: tuple[list[dict], float | None] | None = None) -> dict:
    """The `val/...` values of a validation record; the model is back in train mode afterwards.

    `batches` is what `validation_batches` returned (read here when not given)."""
    acc, model = setup.accelerator, setup.model
    start = time.perf_counter()
    val_batches, bytes_per_token = batches if batches is not None else validation_batches(setup)
    model.eval()
    total, n = summed_val_loss(
        model, val_batches, setup.device, acc.autocast, setup.fused_head, setup.parallelism
    )
    model.train()
    loss = float(acc.reduce(total / max(n, 1), reduction="mean"))
    bpb = bits_per_byte(loss, bytes_per_token)
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
        self._batches: tuple[list[dict], float | None] | None = None  # read at the first validation
        self.last: dict = {}  # the newest pass's `val/...` values (the forecast check reads them)

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if state.step in self.steps:
            read_seconds = 0.0
            if self._batches is None:
                start = time.perf_counter()
                self._batches = validation_batches(self.setup)
                read_seconds = time.perf_counter() - start
            values = validate(self.setup, self._batches)
            # reading the batches is part of the first validation's cost (the bench counts it as evaluation)
            values["val/seconds"] = round(values["val/seconds"] + read_seconds, 3)
            self.metrics.log_validation(state.step, state.tokens_seen, values)
            self.last = values
            if self.setup.accelerator.is_main_process:
                bpb = f", {values['val/bpb']:.4f} bits/byte" if values["val/bpb"] else ""
                log.info(
                    "validation at step %d: loss %.4f%s (%d batches, %.1f s)",
                    state.step,
                    values["val/loss"],
                    bpb,
                    values["val/batches"],
                    values["val/seconds"],
                )

"""Held-out validation on the loop: mean loss over `train.validation.batches` val micro batches, and bits per byte;
then the same per source (`train.validation.per_source_batches` micro batches of each source's own val documents:
`val/<source>/loss`, `val/<source>/bpb`), so a mix that helps one source and hurts another shows.

Runs on every rank at each `train.validation.every_fraction` of training: the data-parallel ranks split the
first `train.validation.batches` micro batches of the val split (each reads its slice of them, tensor-parallel
peers the same slice), and the loss is averaged across ranks — the number one process gets from those batches,
in a fraction of its time. One console line per pass on the main process.
"""

from __future__ import annotations

import contextlib
import itertools
import time

import numpy as np
import torch

from pretrain.core.progress import get_logger
from pretrain.evaluation.metrics import bits_per_byte
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.windows import open_shard_list, read_tokens, window_batch
from pretrain.train.callbacks.base import Callback, StepOutput, fraction_steps
from pretrain.train.fused_loss import FusedHead
from pretrain.train.metrics import MetricsLog, source_val_bpb
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


Batches = list[dict[str, torch.Tensor]]
ValBatches = tuple[Batches, float | None, dict[str, tuple[Batches, float]]]


def validation_batches(setup: TrainSetup) -> ValBatches:
    """This rank's share of the first `train.validation.batches` val micro batches (on the device), the val split's bytes
    per token, and per source the same (`source_val_batches`). The val split is read in order and never
    changes, so the loop reads it once."""
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
    # the data-parallel ranks split the first `batches` micro batches of the split (what one process reads)
    per_rank = max(1, cfg.validation.batches // par.data_world)
    batches = [{k: v.to(setup.device) for k, v in b.items()} for b in itertools.islice(val, per_rank)]
    sources = source_val_batches(setup, val.manifest) if cfg.validation.per_source_batches else {}
    return batches, val.manifest.splits["val"].bytes_per_token, sources


def source_window_ids(n_windows: int, count: int) -> np.ndarray:
    """`count` window ids spread evenly over a stream of `n_windows` windows (repeating when it has fewer)."""
    return (np.arange(count) * n_windows // count) if n_windows >= count else np.arange(count) % n_windows


def source_val_batches(setup: TrainSetup, manifest) -> dict[str, tuple[Batches, float]]:
    """Per source with val tokens: this rank's `per_source_batches` micro batches of its own val stream and its
    val bytes per token. Every data rank gets the same number of batches (a sharded forward is a collective),
    so a source with fewer windows than `per_source_batches x micro batch x ranks` repeats some."""
    recipe, par = setup.recipe, setup.parallelism
    cfg = recipe.train
    out: dict[str, tuple[Batches, float]] = {}
    per_rank = cfg.validation.per_source_batches * cfg.micro_batch_size
    eos = manifest.eos_id if cfg.document_masking else None
    for name, source in sorted(manifest.sources.items()):
        listed = (source.shards or {}).get("val") or []
        shards, starts = open_shard_list(recipe.layout.tokens, manifest, listed)
        n_windows = (int(starts[-1]) - 1) // cfg.seq_len if len(starts) > 1 else 0
        if n_windows < 1:
            continue
        ids = source_window_ids(n_windows, per_rank * par.data_world)[par.data_rank :: par.data_world]
        rows = np.stack([read_tokens(shards, starts, int(w) * cfg.seq_len, cfg.seq_len + 1) for w in ids])
        batches = [
            {k: v.to(setup.device) for k, v in window_batch(rows[i : i + cfg.micro_batch_size], eos).items()}
            for i in range(0, len(rows), cfg.micro_batch_size)
        ]
        out[name] = (batches, source.val_bytes_per_token)
    return out


@torch.no_grad()
def validate(setup: TrainSetup, batches: ValBatches | None = None) -> dict:
    """The `val/...` values of a validation record; the model is back in train mode afterwards.

    `batches` is what `validation_batches` returned (read here when not given)."""
    acc, model = setup.accelerator, setup.model
    start = time.perf_counter()
    val_batches, bytes_per_token, sources = batches if batches is not None else validation_batches(setup)
    model.eval()

    def mean_loss(some: Batches) -> tuple[float, int]:
        total, n = summed_val_loss(
            model, some, setup.device, acc.autocast, setup.fused_head, setup.parallelism
        )
        return float(acc.reduce(total / max(n, 1), reduction="mean")), n

    loss, n = mean_loss(val_batches)
    per_source = {name: mean_loss(b)[0] for name, (b, _) in sources.items()}
    model.train()
    bpb = bits_per_byte(loss, bytes_per_token)
    seconds = round(time.perf_counter() - start, 3)  # counted as evaluation overhead by the bench
    values = {
        "val/loss": round(loss, 5),
        "val/bpb": round(bpb, 5) if bpb else None,
        "val/batches": n,
        "val/seconds": seconds,
    }
    for name, source_loss in per_source.items():
        source_bpb = bits_per_byte(source_loss, sources[name][1])
        values[f"val/{name}/loss"] = round(source_loss, 5)
        values[f"val/{name}/bpb"] = round(source_bpb, 5) if source_bpb else None
    return values


class Validation(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        self.steps = fraction_steps(setup.total_steps, setup.recipe.train.validation.every_fraction, None)
        self._batches: ValBatches | None = None  # read at the first validation
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
                per_source = ", ".join(f"{name} {v:.3f}" for name, v in source_val_bpb(values).items())
                bpb += f" (per source: {per_source})" if per_source else ""
                log.info(
                    "validation at step %d: loss %.4f%s (%d batches, %.1f s)",
                    state.step,
                    values["val/loss"],
                    bpb,
                    values["val/batches"],
                    values["val/seconds"],
                )

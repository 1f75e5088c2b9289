"""Checkpoint averaging (model soup / LAWA / the "merge" of a decay): the weights and their validation.

`pretrain average` (commands/average.py) writes the average; this module checks the ingredients, averages the
weights and measures a folder on a run's val split. It averages the weights of checkpoints of one run (same config, same tokenizer), uniformly or with `--weights`,
in fp32, and writes a normal HF folder (config, safetensors, generation config, tokenizer of the newest
ingredient) that `from_pretrained`, `pretrain eval` and `pretrain push` take. When the ingredients come from a
run folder that still has its packed val split, the validation loss and bits/byte of every ingredient and of the
average are measured the way training's validation records are (`train.validation.batches` micro batches) and
written to `DIR/averaging.json`, so the average is judged against what went into it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.progress import get_logger
from pretrain.evaluation.metrics import bits_per_byte
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.tokenizer import tokenizer_hash
from pretrain.train.callbacks.validation import summed_val_loss
from pretrain.train.checkpoint import WEIGHTS, model_folder_damage

log = get_logger("pretrain.average")
AVERAGING_JSON = "averaging.json"
# config.json keys that say where or how a folder was written, not what the model is
CONFIG_NOISE = ("_name_or_path", "transformers_version", "dtype", "torch_dtype")


def _architecture(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in CONFIG_NOISE}


def check_ingredients(checkpoints: list[Path]) -> None:
    """Every ingredient is an HF folder with safetensors weights, one architecture and one tokenizer."""
    if len(checkpoints) < 2:
        raise PretrainError("pretrain average: give at least two checkpoints to average")
    for folder in checkpoints:
        for name in ("config.json", WEIGHTS, "tokenizer.json"):
            if not (folder / name).exists():
                raise PretrainError(f"{folder}: no {name}; give checkpoint or final/ folders of a run")
        problems = model_folder_damage(folder)
        if problems:  # a truncated safetensors file was a traceback from the reader
            raise PretrainError(f"{folder}: damaged, not averaged: {'; '.join(problems[:3])}; leave it out")
    first = checkpoints[0]
    for folder in checkpoints[1:]:
        if _architecture(folder) != _architecture(first):
            raise PretrainError(
                f"{folder}: config.json differs from {first}'s; average checkpoints of one run"
            )
        if tokenizer_hash(folder) != tokenizer_hash(first):
            raise PretrainError(f"{folder}: tokenizer differs from {first}'s; average checkpoints of one run")


def averaged_weights(checkpoints: list[Path], weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * theta_i in fp32 (one ingredient in memory at a time), cast back to the saved dtypes."""
    total, dtypes = {}, {}
    for folder, w in zip(checkpoints, weights):
        state = load_file(folder / WEIGHTS)
        if total and state.keys() != total.keys():
            raise PretrainError(
                f"{folder}: its tensors differ from {checkpoints[0]}'s; average one run's checkpoints"
            )
        for name, tensor in state.items():
            if name in total and tensor.shape != total[name].shape:
                raise PretrainError(
                    f"{folder}: {name} has shape {tuple(tensor.shape)}, not {tuple(total[name].shape)}"
                )
            dtypes[name] = tensor.dtype
            total[name] = total.get(name, 0) + w * tensor.float()
    return {name: t.to(dtypes[name]) for name, t in total.items()}


def validation_of(folder: Path, recipe: Recipe, tokens: Path) -> dict:
    """`val/loss` and `val/bpb` of an HF folder on the run's val split, as training's validation records."""
    cfg = recipe.train
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    val = TokenLoader(
        tokens, "val", cfg.seq_len, cfg.micro_batch_size, document_positions=cfg.document_masking
    )
    with torch.no_grad():
        total, n = summed_val_loss(model, itertools.islice(val, cfg.validation.batches), torch.device("cpu"))
    loss = float(total) / max(n, 1)
    bpb = bits_per_byte(loss, val.manifest.splits["val"].bytes_per_token)
    return {"val/loss": round(loss, 5), "val/bpb": round(bpb, 5) if bpb else None, "val/batches": n}

"""`pretrain average CKPT... --output DIR`: average the weights of checkpoints of one run into an HF folder.

    pretrain average outputs/tiny/checkpoints/step-0000160 .../step-0000180 .../step-0000200 --output outputs/tiny/avg

The folder (config, safetensors, generation config, tokenizer of the newest ingredient) is what
`from_pretrained`, `pretrain eval` and `pretrain push` take. When the ingredients' run still has its packed val
split, `DIR/averaging.json` holds the validation loss and bits/byte of every ingredient and of the average
(train/average.py measures them), and the command prints them as a table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from pretrain.commands.runs import recipe_of_run, run_dir_of
from pretrain.core.atomic import atomic_dir, write_json_atomic
from pretrain.core.errors import PretrainError
from pretrain.tokens.manifest import TokenManifest
from pretrain.tokens.tokenizer import load_tokenizer, save_tokenizer
from pretrain.train.average import AVERAGING_JSON, averaged_weights, check_ingredients, validation_of
from pretrain.train.checkpoint import RECIPE_YAML, TRAINER_STATE


def average_checkpoints(checkpoints: list[Path], output: Path, weights: list[float] | None = None) -> dict:
    """Write the averaged HF folder to `output` (atomically) and return what `averaging.json` holds."""
    checkpoints = [Path(c) for c in checkpoints]
    check_ingredients(checkpoints)
    hf_logging.disable_progress_bar()  # a bar per from_pretrained / save_pretrained; the command prints a table
    if weights is None:
        weights = [1.0] * len(checkpoints)
    if len(weights) != len(checkpoints) or any(w <= 0 for w in weights):
        raise PretrainError(
            f"--weights: {len(checkpoints)} positive numbers needed (one per checkpoint), got {weights}"
        )
    weights = [w / sum(weights) for w in weights]
    newest = checkpoints[-1]
    averaged = averaged_weights(checkpoints, weights)
    model = AutoModelForCausalLM.from_pretrained(newest, dtype=torch.float32)
    model.load_state_dict({k: v.float() for k, v in averaged.items()}, strict=False)
    dtype = next(iter(averaged.values())).dtype
    report = {
        "ingredients": [{"checkpoint": str(c), "weight": round(w, 6)} for c, w in zip(checkpoints, weights)]
    }
    recipe = recipe_of_run(run_dir_of(newest), newest)
    with atomic_dir(Path(output)) as tmp:
        model.to(dtype).save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(load_tokenizer(newest), tmp)
        saved_recipe = newest / TRAINER_STATE / RECIPE_YAML
        if saved_recipe.exists():  # `pretrain eval DIR` finds the run's tasks through it
            (tmp / TRAINER_STATE).mkdir()
            shutil.copy2(saved_recipe, tmp / TRAINER_STATE / RECIPE_YAML)
        tokens = recipe.layout.tokens if recipe else None
        if recipe and TokenManifest.path(tokens).exists():
            for item in report["ingredients"]:
                item.update(validation_of(Path(item["checkpoint"]), recipe, tokens))
            report["average"] = validation_of(tmp, recipe, tokens)
        write_json_atomic(tmp / AVERAGING_JSON, report)
    return report


def average(checkpoints: list[Path], output: Path, weights: str | None = None) -> int:
    """`pretrain average`: `weights` comma-separated (one per checkpoint; default uniform); prints the table."""
    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise PretrainError(f"--weights: {weights!r} is not a comma-separated list of numbers") from None
    report = average_checkpoints(checkpoints, output, parsed)
    rows = [*report["ingredients"], {"checkpoint": f"average -> {output}", **report.get("average", {})}]
    for row in rows:
        val = f"val/loss {row['val/loss']:.5f}  val/bpb {row['val/bpb']}" if "val/loss" in row else ""
        weight = f"w={row['weight']:.3f}" if "weight" in row else ""
        print(f"{row['checkpoint']}  {weight}  {val}".rstrip())
    return 0

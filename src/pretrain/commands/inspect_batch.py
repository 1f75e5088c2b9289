"""`pretrain inspect-batch OUTPUT_DIR --step N`: the documents of any training step's batch, without training.

    pretrain inspect-batch outputs/tiny --step 372            # the documents of step 372 (source, id, text)
    pretrain inspect-batch outputs/tiny --data-step 371 --json --tokens

The run's recipe (its resolved copy) rebuilds the training loader on one process (the global batch does not
depend on the world size) and draws the batch again (tokens/forensics.py): the loader's order is a function
of the seed, the data, the global batch and the stages, so it is the batch training read. Step N is the
optimizer step as metrics.jsonl counts it; after a spike-guard rollback the data runs ahead of the step count
(a rollback rewinds the weights, not the data), which the rollback events record and this command follows:
N's batch is the one drawn when the run last took step N. `--data-step K` names the K-th global batch (0-based,
the `data_step` of skip and rollback events) directly. A staged mix starts from the newest checkpoint's loader
state at or before the batch instead of replaying every draw from the start.
"""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.commands.runs import recipe_of_run
from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.tokens.forensics import batch_at_step, step_documents
from pretrain.tokens.loader import WindowLoader
from pretrain.tokens.tokenizer import load_tokenizer
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import EVENT_ROLLBACK, read_records
from pretrain.train.setup import build_train_loader


def data_step_of(records: list[dict], step: int, skip_window_steps: int) -> int:
    """The global batch (0-based) optimizer step `step` (1-based) read when the run last took it.

    Without rollbacks it is step - 1. A rollback from step F to a checkpoint at step T moves the data
    `F - T + skip_window_steps` batches ahead of the step count; the rollbacks in effect are those up to the
    last one that went back below `step` (later ones restarted above it, so the run did not take it again)."""
    rollbacks = [r for r in records if r.get("event") == EVENT_ROLLBACK]
    last = max((i for i, r in enumerate(rollbacks) if r["step"] < step), default=-1)
    offset = 0
    for r in rollbacks[: last + 1]:
        offset += r.get("skipped_data_steps", skip_window_steps) + r["from_step"] - r["step"]
    return step - 1 + offset


def _loader(recipe: Recipe, data_step: int) -> WindowLoader:
    """The run's training loader on one process, placed at or before global batch `data_step`."""
    tokenizer = load_tokenizer(recipe.layout.tokenizer)
    total, _ = count_parameters(build_hf_config(recipe, len(tokenizer)))
    loader = build_train_loader(recipe, 0, 1, recipe.train.total_steps(total))
    if hasattr(loader, "seek_step"):
        return loader  # one packed stream: any batch is O(1) away
    for folder in reversed(ckpt.list_checkpoints(recipe.layout.checkpoints)):
        state = ckpt.load_rank_state(folder, 0, 1).get("loader", {})
        if state.get("kind") == "staged" and state.get("step", data_step + 1) <= data_step:
            loader.load_state_dict(state)
            break
    return loader


def inspect_batch(
    run_dir: Path,
    step: int | None = None,
    data_step: int | None = None,
    as_json: bool = False,
    with_tokens: bool = False,
    overrides: list[str] | None = None,
) -> int:
    run_dir = Path(run_dir)
    recipe = recipe_of_run(run_dir, overrides=overrides)
    if recipe is None:
        raise PretrainError(
            f"{run_dir}: no {RunLayout(run_dir).resolved_recipe.name} here; is it a run's output_dir?"
        )
    if (step is None) == (data_step is None):
        raise PretrainError(
            "inspect-batch: give --step N (an optimizer step, from 1) or --data-step K (from 0)"
        )
    if step is not None and step < 1 or data_step is not None and data_step < 0:
        raise PretrainError("inspect-batch: --step counts from 1, --data-step from 0")
    if data_step is None:
        records = read_records(recipe.layout.metrics)
        data_step = data_step_of(records, step, recipe.train.stability.skip_window_steps)
    loader = _loader(recipe, data_step)
    batch = batch_at_step(loader, data_step)
    docs = step_documents(loader, batch.seq_len, batch.windows, load_tokenizer(recipe.layout.tokenizer))
    report = {
        "step": step,
        "data_step": data_step,
        "seq_len": batch.seq_len,
        "windows": batch.windows.tolist(),
        "documents": [{**d.to_json(), "shard": d.shard, "index": d.index} for d in docs],
    }
    if with_tokens:
        report["tokens"] = batch.rows.tolist()
    if as_json:
        print(json.dumps(report))
        return 0
    where = f"step {step} (data step {data_step})" if step is not None else f"data step {data_step}"
    print(f"{where}: {len(batch.windows)} windows of {batch.seq_len} tokens, {len(docs)} documents")
    width = max((len(d.source) for d in docs), default=6)
    for d in docs:
        print(f"  {d.source:<{width}}  {d.id}  {d.text!r}")
    if with_tokens:
        for window, row in zip(batch.windows, batch.rows):
            print(f"  window {int(window)}: {' '.join(map(str, row.tolist()))}")
    return 0

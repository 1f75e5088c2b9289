"""A CPU-sized shape for smoke runs of any recipe, shared by the test suite and the benches.

`--set` overrides that shrink the model and batch so that a few dozen optimizer steps take seconds on
a laptop CPU; callers add the data size, length and checkpoint cadence they need.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from pretrain.commands.stages import stage_output
from pretrain.config import Recipe
from pretrain.train import checkpoint as ckpt
from pretrain.train.loop import run_training

SMOKE_SHAPE = [
    "tokenizer.vocab_size=512",
    "model.hidden_size=64",
    "model.intermediate_size=128",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
    "model.num_key_value_heads=2",
    "model.max_position_embeddings=64",
    "train.seq_len=64",
    "train.micro_batch_size=4",
    "train.global_batch_tokens=512",
    "train.log_every=1",
]


def run_train_stage(recipe: Recipe, resume: str = "never") -> Path:
    """Run the training stage directly, as `pretrain train RECIPE --force --resume RESUME` does."""
    return run_training(recipe, stage_output(recipe, "train"), resume)


# the smallest `model` and `train` sections of a valid recipe, for tests of stages that do not train
MINIMAL_MODEL = {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2}
MINIMAL_TRAIN = {"seq_len": 16, "micro_batch_size": 1, "global_batch_tokens": 16, "steps": 1}


def write_recipe_file(recipe: Recipe, path: Path) -> Path:
    """The recipe as a YAML file without its launch config: the test's own launcher decides the processes."""
    data = recipe.model_dump(mode="json")
    data["accelerate_config"] = None
    path.write_text(yaml.safe_dump(data))
    return path


def write_checkpoint(recipe: Recipe, step: int, total_steps: int, **config_changes: object) -> Path:
    """A complete checkpoint folder of `recipe`'s run at `step` of `total_steps`, as the format says
    (`train/checkpoint.py`) but without training: empty weights, the recipe's model config (with
    `config_changes`), state.json and recipe.yaml. For tests of what reads a run folder, not of loading."""
    folder = recipe.layout.checkpoint(step)
    ts = folder / ckpt.TRAINER_STATE
    ts.mkdir(parents=True)
    config = {"model_type": recipe.model.model_type, **recipe.model.hf_fields, **config_changes}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / ckpt.WEIGHTS).write_bytes(b"")
    tokens = step * recipe.train.global_batch_tokens
    state = {"step": step, "tokens_seen": tokens, "world_size": 1, "total_steps": total_steps}
    (ts / ckpt.STATE_JSON).write_text(json.dumps(state))
    (ts / ckpt.RECIPE_YAML).write_text(ckpt.resolved_recipe_yaml(recipe))
    ckpt.seal_checkpoint(folder)  # its COMPLETE marker lists these files: intact, as a written checkpoint is
    return folder


def copy_run_up_to(ref_out: Path, out: Path, step: int) -> None:
    """Make `out` what `ref_out`'s run left behind had it been killed after `step`: that step's checkpoint
    and the metrics up to it. Resuming `out` must then reproduce the rest of `ref_out`'s losses."""
    name = f"step-{step:07d}"
    shutil.copytree(ref_out / "checkpoints" / name, out / "checkpoints" / name)
    lines = (ref_out / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    (out / "metrics.jsonl").write_text("\n".join(kept) + "\n")


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...]; None when there is no such process (Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def child_pids(pid: int) -> list[int]:
    """The running children of `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    """Wait up to `seconds` for `pids` to end; returns those still running."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if is_running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left

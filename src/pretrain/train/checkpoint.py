"""Checkpoints: a normal HF model folder plus `trainer_state/`, written atomically, newest `keep_last` kept.

    checkpoints/step-0000100/
        config.json  model.safetensors  generation_config.json  tokenizer files
        trainer_state/optimizer.pt          optimizer state (tensors + plain types: loads with weights_only=True)
        trainer_state/optimizer/            instead, under FSDP: each rank's optimizer shard (torch.distributed.checkpoint)
        trainer_state/rank-00000.json       that rank's RNG states and loader position
        trainer_state/state.json            step, tokens, scheduler, spike guard, recent metrics, world size
        trainer_state/recipe.yaml           the resolved recipe
        trainer_state/COMPLETE              written last; a folder without it is never resumed from

Under FSDP the weights are gathered once into a full state dict for the HF folder (so every
checkpoint loads with `from_pretrained`), while the optimizer state stays sharded: each rank writes
and reads only its own part, with no rank ever holding the whole optimizer in memory.

The folder is assembled under `checkpoints/.step-N.tmp-*` and renamed when complete, so a kill or a
full disk mid-write leaves the previous checkpoint as the newest complete one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from pretrain.core.atomic import fsync_dir, fsync_tree
from pretrain.core.errors import StageError

STEP_DIR = re.compile(r"^step-(\d{7,})$")


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def is_complete(folder: Path) -> bool:
    return (folder / "trainer_state" / "COMPLETE").exists() and (folder / "model.safetensors").exists()


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if STEP_DIR.match(p.name) and p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tupled(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def tmp_dir_for(ckpt_root: Path, step: int, attempt: str) -> Path:
    return ckpt_root / f".{step_name(step)}.tmp-{attempt}"


def write_rank_state(tmp: Path, rank: int, loader_state: dict) -> None:
    path = tmp / "trainer_state" / f"rank-{rank:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rng": rng_state(), "loader": loader_state}))


def full_weights(model, sharded: bool) -> dict | None:
    """Under FSDP: the gathered full state dict on rank 0 ({} elsewhere). A collective: every rank calls it.

    Unsharded models return None: `save_pretrained` reads the module itself.
    """
    if not sharded:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_model_folder(folder: Path, unwrapped, tokenizer, weights: dict | None) -> None:
    """An HF model folder (config, safetensors, generation config, tokenizer); main process only."""
    unwrapped.save_pretrained(folder, state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def save_optimizer(tmp: Path, model, optimizer, sharded: bool, is_main: bool) -> None:
    """optimizer.pt from the main process, or under FSDP one shard per rank (a collective)."""
    ts = tmp / "trainer_state"
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        dcp.save(
            {"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(ts / "optimizer")
        )
    elif is_main:
        ts.mkdir(parents=True, exist_ok=True)
        torch.save(optimizer.state_dict(), ts / "optimizer.pt")


def write_main_state(tmp: Path, state: dict, recipe_yaml: str) -> None:
    ts = tmp / "trainer_state"
    ts.mkdir(parents=True, exist_ok=True)
    (ts / "state.json").write_text(json.dumps(state, indent=2))
    (ts / "recipe.yaml").write_text(recipe_yaml)


def finalize(tmp: Path, final: Path) -> None:
    """Mark complete, fsync, and rename into place (replacing an older folder of the same step)."""
    (tmp / "trainer_state" / "COMPLETE").write_text("ok\n")
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def prune(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints, and stale temp folders."""
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in ckpt_root.glob(".step-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def load_main_state(folder: Path, model, optimizer, sharded: bool = False) -> dict:
    """Weights, optimizer and state.json back into a (possibly FSDP-sharded) model; every rank calls it."""
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    expected = set(model.state_dict())  # same names sharded or not (FSDP2 keeps FQNs, values are DTensors)
    # tied weights are saved once; everything else must match
    missing = sorted(k for k in expected - set(weights) if "lm_head" not in k)
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise StageError(
            f"{folder}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # each rank keeps only its shard of the full tensors it reads
        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        model.load_state_dict(weights, strict=False)
    _load_optimizer(folder / "trainer_state", model, optimizer, sharded)
    return json.loads((folder / "trainer_state" / "state.json").read_text())


def _load_optimizer(ts: Path, model, optimizer, sharded: bool) -> None:
    has_shards, has_full = (ts / "optimizer").is_dir(), (ts / "optimizer.pt").exists()
    if (has_shards and not sharded) or (sharded and has_full and not has_shards):
        kind = "sharded (FSDP)" if sharded else "unsharded"
        raise StageError(
            f"{ts}: optimizer state was written by a run sharded differently from this {kind} one; "
            "resume with the accelerate config that wrote the checkpoint"
        )
    if sharded and has_shards:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

        template = {"optimizer": get_optimizer_state_dict(model, optimizer)}
        dcp.load(template, checkpoint_id=str(ts / "optimizer"))  # reads this rank's shard only
        set_optimizer_state_dict(model, optimizer, template["optimizer"])
    elif has_full:
        optimizer.load_state_dict(torch.load(ts / "optimizer.pt", map_location="cpu", weights_only=True))


def load_rank_state(folder: Path, rank: int) -> dict:
    path = folder / "trainer_state" / f"rank-{rank:05d}.json"
    if not path.exists():
        raise StageError(
            f"{path}: missing — the checkpoint was written by fewer processes; resume with the same world size"
        )
    return json.loads(path.read_text())

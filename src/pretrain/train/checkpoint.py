"""Checkpoints: a normal HF model folder plus `trainer_state/`, written atomically, newest `keep_last` kept.

    checkpoints/step-0000100/
        config.json  model.safetensors  generation_config.json  tokenizer files
        trainer_state/optimizer.pt          optimizer state (tensors + plain types: loads with weights_only=True)
        trainer_state/rank-00000.json       that rank's RNG states and loader position
        trainer_state/state.json            step, tokens, scheduler, spike guard, recent metrics, world size
        trainer_state/recipe.yaml           the resolved recipe
        trainer_state/COMPLETE              written last; a folder without it is never resumed from

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

from pretrain.stages import _fsync_dir, _fsync_tree

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


def write_main_state(
    tmp: Path, model, tokenizer, optimizer, state: dict, recipe_yaml: str, save_optimizer: bool
) -> None:
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    ts = tmp / "trainer_state"
    ts.mkdir(parents=True, exist_ok=True)
    if save_optimizer:
        torch.save(optimizer.state_dict(), ts / "optimizer.pt")
    (ts / "state.json").write_text(json.dumps(state, indent=2))
    (ts / "recipe.yaml").write_text(recipe_yaml)


def finalize(tmp: Path, final: Path) -> None:
    """Mark complete, fsync, and rename into place (replacing an older folder of the same step)."""
    (tmp / "trainer_state" / "COMPLETE").write_text("ok\n")
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def prune(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints, and stale temp folders."""
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in ckpt_root.glob(".step-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def load_main_state(folder: Path, model, optimizer) -> dict:
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # tied weights are saved once; everything else must match
    missing = [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        from pretrain.errors import StageError

        raise StageError(
            f"{folder}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    opt_path = folder / "trainer_state" / "optimizer.pt"
    if opt_path.exists():
        optimizer.load_state_dict(torch.load(opt_path, map_location="cpu", weights_only=True))
    return json.loads((folder / "trainer_state" / "state.json").read_text())


def load_rank_state(folder: Path, rank: int) -> dict:
    path = folder / "trainer_state" / f"rank-{rank:05d}.json"
    if not path.exists():
        from pretrain.errors import StageError

        raise StageError(
            f"{path}: missing — the checkpoint was written by fewer processes; resume with the same world size"
        )
    return json.loads(path.read_text())

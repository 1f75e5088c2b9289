"""Checkpoints: a normal HF model folder plus `trainer_state/`, written atomically, newest `keep_last` kept.

    checkpoints/step-0000100/
        config.json  model.safetensors  generation_config.json  tokenizer files
        trainer_state/optimizer/            the optimizer state: one shard per rank (torch.distributed.checkpoint),
                                            keyed by parameter name, so it loads on any mesh and world size
        trainer_state/optimizer.pt          instead, in checkpoints written before sharded checkpoints: the whole
                                            optimizer state (an unsharded run resumes from it)
        trainer_state/rank-00000.json       that rank's RNG states and loader position
        trainer_state/state.json            step, tokens, scheduler, spike guard, recent metrics, world size
        trainer_state/recipe.yaml           the resolved recipe
        trainer_state/COMPLETE              written last: every other file's size and SHA-256 (core/integrity.py);
                                            a folder without it, or whose files differ from it, is never resumed from

No rank ever holds the whole model or optimizer: each writes its own shards (`train/parallel/state_io.py`),
and `model.safetensors`, the one file `from_pretrained` loads, is consolidated from the weight shards tensor by
tensor. Reading back, each rank reads only its slices of both, whatever mesh wrote them: a checkpoint of 4
ranks as FSDP 2 x TP 2 resumes on 2 ranks, on 1, or on 8.

The folder is assembled under `checkpoints/.step-N.tmp-*` and renamed when complete, so a kill or a
full disk mid-write leaves the previous checkpoint as the newest complete one. What happens to it later (a file
deleted or truncated by hand, a copy cut short) is caught by `damage()` before it is used: resume falls back to
the newest intact checkpoint, and push refuses it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
import yaml

from pretrain.config import Recipe
from pretrain.core.atomic import fsync_dir, fsync_tree
from pretrain.core.errors import StageError
from pretrain.core.integrity import check_sealed, seal
from pretrain.core.layout import CHECKPOINT_PREFIX, step_name
from pretrain.core.markers import MARKER, marker_damage
from pretrain.evaluation.records import EVAL_RESULTS
from pretrain.hub.push import UploadFilter
from pretrain.tokens.tokenizer import save_tokenizer
from pretrain.train.parallel import state_io
from pretrain.train.rng import rng_state

STEP_DIR = re.compile(rf"^{CHECKPOINT_PREFIX}(\d{{7,}})$")
TMP_GLOB = (
    f".{CHECKPOINT_PREFIX}*.tmp-*"  # folders of a checkpoint still being written (or whose write failed)
)

# the `trainer_state/` folder of a checkpoint: every name it holds is spelled here only
TRAINER_STATE = "trainer_state"
STATE_JSON = "state.json"
RECIPE_YAML = "recipe.yaml"
OPTIMIZER_PT = "optimizer.pt"
OPTIMIZER_SHARDS = "optimizer"
COMPLETE = "COMPLETE"
WEIGHTS = "model.safetensors"


def upload_filter(include_optimizer: bool = False) -> UploadFilter:
    """What of a checkpoint (or final/) folder stays local on a push: `trainer_state/` (optimizer pickles,
    RNG; uploaded whole when asked), the stage marker and `pretrain eval`'s local results."""
    return UploadFilter(
        skip_names=frozenset({MARKER, EVAL_RESULTS}),
        skip_dirs=frozenset() if include_optimizer else frozenset({TRAINER_STATE}),
        whole_dirs=frozenset({TRAINER_STATE}) if include_optimizer else frozenset(),
    )


def rank_state_name(rank: int) -> str:
    return f"rank-{rank:05d}.json"


def is_complete(folder: Path) -> bool:
    """The write of the checkpoint finished (its COMPLETE marker exists); `damage` says whether its files are
    still what was written."""
    return (folder / TRAINER_STATE / COMPLETE).exists()


def damage(folder: Path, hashes: bool = True) -> list[str]:
    """What is wrong with a checkpoint's files, one line each ([] when intact): its COMPLETE marker lists every
    file with its size and SHA-256 (`hashes=False`: sizes only). A checkpoint sealed before the marker carried
    that list is checked for the files every checkpoint has."""
    marker = Path(folder) / TRAINER_STATE / COMPLETE
    if not marker.exists():
        return [f"{TRAINER_STATE}/{COMPLETE}: missing (the write never finished)"]
    problems = check_sealed(folder, marker, hashes)
    return _unsealed_damage(Path(folder)) if problems is None else problems


def _unsealed_damage(folder: Path) -> list[str]:
    """A checkpoint sealed before COMPLETE listed its files: the files its own state.json and recipe.yaml say
    it must have (weights, every rank's state, the optimizer state when the recipe saved it)."""
    ts = folder / TRAINER_STATE
    try:
        state = json.loads((ts / STATE_JSON).read_text(encoding="utf-8"))
        saved_optimizer = yaml.safe_load((ts / RECIPE_YAML).read_text(encoding="utf-8"))["train"][
            "checkpoint"
        ]["save_optimizer"]
        world = int(state.get("world_size", 1))
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as exc:
        return [f"{TRAINER_STATE}/{STATE_JSON} or {RECIPE_YAML}: unreadable ({type(exc).__name__})"]
    needed = [WEIGHTS, *(f"{TRAINER_STATE}/{rank_state_name(r)}" for r in range(world))]
    problems = [f"{rel}: missing" for rel in needed if not (folder / rel).is_file()]
    if saved_optimizer and not ((ts / OPTIMIZER_PT).is_file() or (ts / OPTIMIZER_SHARDS).is_dir()):
        problems.append(f"{TRAINER_STATE}/{OPTIMIZER_SHARDS}: missing (the recipe saved the optimizer)")
    return problems


def model_folder_damage(folder: Path) -> list[str]:
    """`damage` of a checkpoint, or of `final/` (sealed by its stage marker); [] for a folder sealed by
    neither (an averaged model, a folder from elsewhere): nothing records what it held."""
    if (Path(folder) / TRAINER_STATE).is_dir():
        return damage(folder)
    return marker_damage(folder)


def not_a_checkpoint(folder: Path) -> str:
    """`folder` does not exist (pruned by `keep_last`, or mistyped): which checkpoints of its run do."""
    folder = Path(folder)
    available = [p.name for p in list_checkpoints(folder.parent)]
    pruned = " (train.checkpoint.keep_last removes older ones)" if STEP_DIR.match(folder.name) else ""
    there = f"; available in {folder.parent}: {', '.join(available)}" if available else ""
    return f"{folder}: no such checkpoint{pruned}{there}"


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints (their COMPLETE marker written; `damage` checks their content), oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if STEP_DIR.match(p.name) and p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def resolved_recipe_yaml(recipe: Recipe) -> str:
    """The recipe with every default filled in and every path absolute, as saved in each checkpoint and next
    to the run: `pretrain validate|run` take it as it is, from any folder."""
    return yaml.safe_dump(recipe.values_as_run(), sort_keys=False)


def tmp_dir_for(ckpt_root: Path, step: int, attempt: str) -> Path:
    return ckpt_root / f".{step_name(step)}.tmp-{attempt}"


def write_rank_state(tmp: Path, rank: int, loader_state: dict) -> None:
    """This rank's RNG states and loader position; every rank writes its own."""
    path = tmp / TRAINER_STATE / rank_state_name(rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rng": rng_state(), "loader": loader_state}))


def transformers_class(model) -> str:
    """The model's transformers class name (FSDP2 and replicate put a class of their own in front of it)."""
    return next(c.__name__ for c in type(model).__mro__ if c.__module__.startswith("transformers."))


def save_model_files(folder: Path, model, tokenizer) -> None:
    """What `save_pretrained` writes besides the weights (config with dtype and architecture, generation config)
    and the tokenizer; main process only. The weights are written by every rank (`state_io.write_weights`)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.dtype = str(model.dtype).split(".")[1]
    config.architectures = [transformers_class(model)]
    config.save_pretrained(folder)
    if model.can_generate():
        model.generation_config.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


def optimizer_path(folder: Path) -> Path:
    """Where a checkpoint's optimizer shards go (`state_io.write_optimizer`)."""
    return folder / TRAINER_STATE / OPTIMIZER_SHARDS


def write_main_state(tmp: Path, state: dict, recipe_yaml: str) -> None:
    """state.json (the trainer's counters) and recipe.yaml; main process only."""
    ts = tmp / TRAINER_STATE
    ts.mkdir(parents=True, exist_ok=True)
    (ts / STATE_JSON).write_text(json.dumps(state, indent=2))
    (ts / RECIPE_YAML).write_text(recipe_yaml)


def seal_checkpoint(folder: Path, files: dict | None = None) -> None:
    """Write the COMPLETE marker: the size and SHA-256 of every other file of the folder. The last write of a
    checkpoint, whatever wrote the rest (`files`: a manifest merged from the ranks that wrote their own parts,
    `core.integrity.manifest_of`)."""
    seal(folder, folder / TRAINER_STATE / COMPLETE, {"complete": True}, files)


def finalize(tmp: Path, final: Path) -> None:
    """Seal, fsync, and rename into place (replacing an older folder of the same step)."""
    seal_checkpoint(tmp)
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def prune(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints, and stale temp folders."""
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    discard_partial(ckpt_root)


def discard_partial(ckpt_root: Path) -> None:
    """Remove temp folders of unfinished checkpoint writes (they are never resumed from anyway)."""
    for tmp in ckpt_root.glob(TMP_GLOB):
        shutil.rmtree(tmp, ignore_errors=True)


def load_main_state(folder: Path, model, optimizer, sharded: bool = False) -> dict:
    """Weights, optimizer and state.json back into the model on its mesh (each rank reads its own slices of
    files any mesh wrote); every rank calls it."""
    _check_weight_names(folder, model)
    state_io.read_weights(folder, model)
    _load_optimizer(folder / TRAINER_STATE, model, optimizer, sharded)
    return json.loads((folder / TRAINER_STATE / STATE_JSON).read_text())


def _check_weight_names(folder: Path, model) -> None:
    from safetensors import safe_open

    with safe_open(folder / WEIGHTS, framework="pt") as weights:
        saved = set(weights.keys())
    expected = set(state_io.model_state(model))  # a tied head is saved once, as the embedding
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        raise StageError(
            f"{folder}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _load_optimizer(ts: Path, model, optimizer, sharded: bool) -> None:
    has_shards, has_full = (ts / OPTIMIZER_SHARDS).is_dir(), (ts / OPTIMIZER_PT).exists()
    if sharded and has_full and not has_shards:
        raise StageError(
            f"{ts}: the optimizer state is one {OPTIMIZER_PT} (a checkpoint written before sharded checkpoints), "
            "which only an unsharded run can load; resume it on one process or with data parallelism (DDP)"
        )
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        if has_shards:
            state_io.read_optimizer(ts / OPTIMIZER_SHARDS, model, optimizer)
        elif has_full:
            optimizer.load_state_dict(torch.load(ts / OPTIMIZER_PT, map_location="cpu", weights_only=True))
    # torch's words for "not this optimizer's state"
    except (ValueError, KeyError, RuntimeError, CheckpointException) as exc:
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        raise StageError(
            f"{ts}: its optimizer state does not fit this run's optimizer ({type(inner).__name__}): was "
            "train.optimizer (name, parameter groups) changed since it was written? Resume with the recipe that "
            f"wrote it ({type(exc).__name__}: {str(exc)[:160]})"
        ) from None


def load_rank_state(folder: Path, rank: int, world_size: int) -> dict:
    """What `write_rank_state` wrote, for `rank` of a resume on `world_size` processes: {"rng", "loader"}.

    On the world size that wrote the checkpoint each rank takes its own file. On another one every rank
    takes rank 0's: the loader position in it is global (the same in every rank's file), and the RNG
    streams are replicated — every rank is seeded alike and draws alike — so rank 0's stands for all.
    """
    saved_world = json.loads((folder / TRAINER_STATE / STATE_JSON).read_text()).get("world_size", 1)
    source = rank if world_size == saved_world else 0
    path = folder / TRAINER_STATE / rank_state_name(source)
    if not path.exists():
        raise StageError(
            f"{path}: missing — the checkpoint was written by {saved_world} processes but lacks this rank's "
            "state; resume from an earlier checkpoint"
        )
    return json.loads(path.read_text())

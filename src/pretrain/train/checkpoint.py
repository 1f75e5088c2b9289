"""Checkpoints: a normal HF model folder plus `trainer_state/`, written atomically, newest `keep_last` kept.

    checkpoints/step-0000100/
        config.json  model.safetensors  generation_config.json  tokenizer files
        trainer_state/optimizer.pt          optimizer state (tensors + plain types: loads with weights_only=True)
        trainer_state/optimizer/            instead, under FSDP: each rank's optimizer shard (torch.distributed.checkpoint)
        trainer_state/rank-00000.json       that rank's RNG states and loader position
        trainer_state/state.json            step, tokens, scheduler, spike guard, recent metrics, world size
        trainer_state/recipe.yaml           the resolved recipe
        trainer_state/COMPLETE              written last: every other file's size and SHA-256 (core/integrity.py);
                                            a folder without it, or whose files differ from it, is never resumed from

Under FSDP the weights are gathered once into a full state dict for the HF folder (so every
checkpoint loads with `from_pretrained`), while the optimizer state stays sharded: each rank writes
and reads only its own part, with no rank ever holding the whole optimizer in memory.

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
from pretrain.train.optim import optimizer_parts
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
        problems.append(f"{TRAINER_STATE}/{OPTIMIZER_PT}: missing (the recipe saved the optimizer)")
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
    save_tokenizer(tokenizer, folder)


def save_optimizer(tmp: Path, model, optimizer, sharded: bool, is_main: bool) -> None:
    """optimizer.pt from the main process, or under FSDP one shard per rank (a collective)."""
    ts = tmp / TRAINER_STATE
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        dcp.save(
            {"optimizer": get_optimizer_state_dict(model, optimizer_parts(optimizer))},
            checkpoint_id=str(ts / OPTIMIZER_SHARDS),
        )
    elif is_main:
        ts.mkdir(parents=True, exist_ok=True)
        torch.save(optimizer.state_dict(), ts / OPTIMIZER_PT)


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
    """Weights, optimizer and state.json back into a (possibly FSDP-sharded) model; every rank calls it."""
    from safetensors.torch import load_file

    weights = load_file(folder / WEIGHTS)
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
    _load_optimizer(folder / TRAINER_STATE, model, optimizer, sharded)
    return json.loads((folder / TRAINER_STATE / STATE_JSON).read_text())


def _load_optimizer(ts: Path, model, optimizer, sharded: bool) -> None:
    has_shards, has_full = (ts / OPTIMIZER_SHARDS).is_dir(), (ts / OPTIMIZER_PT).exists()
    if (has_shards and not sharded) or (sharded and has_full and not has_shards):
        kind = "sharded (FSDP)" if sharded else "unsharded"
        raise StageError(
            f"{ts}: optimizer state was written by a run sharded differently from this {kind} one; "
            "resume with the accelerate config that wrote the checkpoint"
        )
    try:
        _load_optimizer_state(ts, model, optimizer, sharded, has_shards, has_full)
    except (ValueError, KeyError, RuntimeError) as exc:  # torch's words for "not this optimizer's state"
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        raise StageError(
            f"{ts}: its optimizer state does not fit this run's optimizer ({type(inner).__name__}): was "
            "train.optimizer (name, parameter groups) changed since it was written? Resume with the recipe that "
            f"wrote it ({type(exc).__name__}: {str(exc)[:160]})"
        ) from None


def _load_optimizer_state(
    ts: Path, model, optimizer, sharded: bool, has_shards: bool, has_full: bool
) -> None:
    if sharded and has_shards:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

        parts = optimizer_parts(optimizer)  # get_optimizer_state_dict steps a fresh Muon: every rank calls it
        template = {"optimizer": get_optimizer_state_dict(model, parts)}
        dcp.load(template, checkpoint_id=str(ts / OPTIMIZER_SHARDS))  # reads this rank's shard only
        set_optimizer_state_dict(model, parts, template["optimizer"])
    elif has_full:
        optimizer.load_state_dict(torch.load(ts / OPTIMIZER_PT, map_location="cpu", weights_only=True))


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

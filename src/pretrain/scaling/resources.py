"""What a run will need of this machine, from its plan: disk for the stages still to run, memory per device.

Disk, per stage that will (re-)run (an existing, current folder costs nothing more):

- curate: the mix (`data.mixture` target bytes, or its target tokens at `BYTES_PER_TOKEN`) twice over — the
  tasks' scratch copy (`.curate-work/`) lives until the mix is published;
- pack: every token of the mix at 2 bytes (vocabulary < 65,536) or 4, plus its scratch copy;
- train: `keep_last` checkpoints, one more being written, and `final/`: weights at 4 bytes per parameter (2 for
  `bf16-true`) and, with `checkpoint.save_optimizer`, 8 more bytes per parameter of optimizer state.

Estimates, deliberately on the high side: the check is for a disk that cannot hold the run at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.verdict import Verdict

BYTES_PER_TOKEN = 4.0  # English web text under a ~50k BPE; code and small vocabularies are lower
HEADROOM = 1.1


def size_text(n: float) -> str:
    """Bytes for people: `12 MB`, `1.8 TB` (decimal units, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def mix_bytes(recipe: Recipe) -> float:
    mixture = recipe.data.mixture
    if mixture.target_bytes:
        return float(mixture.target_bytes)
    if mixture.target_tokens:
        return mixture.target_tokens * BYTES_PER_TOKEN
    return 0.0


def disk_needed(recipe: Recipe, params: int, vocab: int, stages: set[str]) -> dict[str, float]:
    """Bytes each stage of `stages` (the ones that will run) writes, by stage name."""
    need: dict[str, float] = {}
    mix = mix_bytes(recipe)
    if "curate" in stages:
        need["curate"] = 2 * mix
    if "pack" in stages:
        need["pack"] = 2 * (mix / BYTES_PER_TOKEN) * (2 if vocab < 2**16 else 4)
    if "train" in stages:
        cfg = recipe.train
        weights = params * (2 if cfg.precision == "bf16-true" else 4)
        optimizer = params * 8 if cfg.checkpoint.save_optimizer else 0
        need["train"] = (cfg.checkpoint.keep_last + 1) * (weights + optimizer) + weights
    return need


def free_bytes(folder: Path) -> int:
    """Free space on the filesystem that holds `folder` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def disk_verdict(recipe: Recipe, params: int, vocab: int, stages: set[str]) -> Verdict:
    need = disk_needed(recipe, params, vocab, stages)
    total = sum(need.values()) * HEADROOM
    free = free_bytes(recipe.out)
    parts = ", ".join(f"{name} {size_text(b)}" for name, b in need.items()) or "nothing new to write"
    if total <= free:
        return Verdict.passed("disk", f"~{size_text(total)} needed ({parts}), {size_text(free)} free")
    return Verdict.failed(
        "disk",
        f"{recipe.out} needs ~{size_text(total)} ({parts}) but its filesystem has {size_text(free)} free; "
        "point --output-dir at a larger disk, lower train.checkpoint.keep_last, or set "
        "train.checkpoint.save_optimizer: false",
    )


def ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def memory_verdict(planned_gb: float, device: str, available_gb: float | None) -> Verdict:
    """The plan's memory per device (`scaling.memory`) against what one device (or a CPU process) has."""
    if available_gb is None:
        return Verdict.passed("memory", f"~{planned_gb:.3g} GiB per device planned ({device}: size unknown)")
    if planned_gb <= 0.9 * available_gb:
        return Verdict.passed(
            "memory", f"~{planned_gb:.3g} GiB per device planned, {device} has {available_gb:.3g} GiB"
        )
    return Verdict.failed(
        "memory",
        f"~{planned_gb:.3g} GiB per device planned (weights, gradients, optimizer, activations: `pretrain plan`) "
        f"but {device} has {available_gb:.3g} GiB; lower train.micro_batch_size (the global batch stays), set "
        "model.gradient_checkpointing: true, or shard with an FSDP accelerate config",
    )

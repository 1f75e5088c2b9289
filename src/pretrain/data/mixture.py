"""Weighted mixture: turn per-source clean documents into a mix of the requested size and shares.

Weights are normalised to shares of the mix in bytes (a proxy for tokens until the tokenizer
exists; `pretrain pack` reports achieved token shares). The mix size is `target_bytes`, or
`target_tokens * bytes_per_token`, or — with neither — the largest mix that needs no upsampling.
A source with fewer clean bytes than its share is repeated (whole epochs, then a seeded sample)
up to `max_epochs`; beyond that its share falls short and the report says so. Selection is
deterministic for the recipe seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class SourcePlan:
    name: str
    share: float  # requested, normalised
    available_bytes: int
    target_bytes: int
    epochs: float  # target / available (capped at max_epochs)
    capped: bool


def plan_mixture(
    weights: dict[str, float],
    available: dict[str, int],
    max_epochs: dict[str, float],
    target_bytes: int | None,
) -> list[SourcePlan]:
    total_w = sum(weights.values())
    shares = {k: w / total_w for k, w in weights.items()}
    if target_bytes is None:
        target_bytes = int(min(available[k] / shares[k] for k in shares)) if all(available.values()) else 0
    plans = []
    for name, share in shares.items():
        want = int(round(share * target_bytes))
        have = available[name]
        epochs = want / have if have else 0.0
        capped = epochs > max_epochs[name]
        if capped:
            epochs = max_epochs[name]
            want = int(have * epochs)
        plans.append(SourcePlan(name, share, have, want, epochs, capped))
    return plans


def select(doc_sizes: list[int], target_bytes: int, seed: int) -> list[tuple[int, int]]:
    """Choose `(doc_index, repeat)` pairs whose sizes add up to about `target_bytes`.

    Whole passes over all documents first (repeat = 0, 1, ...), then a seeded random sample of the
    remainder; the last document is included when that lands closer to the target than omitting it.
    """
    total = sum(doc_sizes)
    if total == 0 or target_bytes <= 0:
        return []
    chosen: list[tuple[int, int]] = []
    full, remainder = divmod(target_bytes, total)
    for rep in range(int(full)):
        chosen += [(i, rep) for i in range(len(doc_sizes))]
    order = list(range(len(doc_sizes)))
    random.Random(seed).shuffle(order)
    acc = 0
    for i in order:
        if acc >= remainder:
            break
        size = doc_sizes[i]
        if acc + size > remainder and (acc + size - remainder) > (remainder - acc):
            continue  # taking it would overshoot more than leaving it out
        chosen.append((i, int(full)))
        acc += size
    return sorted(chosen, key=lambda x: (x[1], x[0]))

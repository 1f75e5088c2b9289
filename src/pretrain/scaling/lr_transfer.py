"""Learning rates of a smaller model of the recipe's family (ladder rungs, mixture proxies): one stated rule.

    AdamW lr (train.optimizer.lr; under Muon, the lr of embeddings, norms and the head):
        lr_small = lr_target x sqrt(hidden_target / hidden_small), at most 4 x lr_target
    Muon lr (train.optimizer.muon.lr): unchanged.

Why. Under μP the Adam lr of hidden matrices scales as 1 / width while that of embeddings and vectors stays; a
single AdamW lr covers both, so the rule takes the geometric middle (exponent 1/2) and caps the step at 4x so a
very narrow model does not diverge. Muon orthogonalises each matrix update and scales it by the matrix's shape,
which is what makes its lr carry across widths (Moonshot's "Muon is scalable"), so its lr is kept. Depth and
length do not enter. Before this rule the ladder's rungs inherited the target's lrs unchanged.
"""

from __future__ import annotations

import math

MAX_SCALE = 4.0
RULE = (
    "AdamW lr x sqrt(hidden_target / hidden_small) (at most 4x); Muon lr unchanged (scaling/lr_transfer.py)"
)


def adamw_lr_scale(target_hidden: int, small_hidden: int) -> float:
    """The factor on the AdamW lr of a model of width `small_hidden` taken from one of `target_hidden`."""
    return min(MAX_SCALE, max(1.0, math.sqrt(target_hidden / small_hidden)))  # a wider one keeps the lr


def scale_learning_rates(raw: dict, target_hidden: int, small_hidden: int) -> float:
    """Apply the rule to a recipe's JSON values (`raw["train"]["optimizer"]`) in place; returns the factor."""
    factor = adamw_lr_scale(target_hidden, small_hidden)
    raw["train"]["optimizer"]["lr"] = raw["train"]["optimizer"]["lr"] * factor
    return factor

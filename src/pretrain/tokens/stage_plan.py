"""A data stage as the loader sees it: when it ends, its source shares and its geometry (sequence length,
micro batch, document masking), from a recipe's `train.data_stages` (tokens/stages.py draws them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain.config.stages import stage_geometries
from pretrain.core.errors import DataError


@dataclass(frozen=True)
class LoaderStage:
    """A stage as the loader needs it: its label, the optimizer step it ends at (exclusive), source shares,
    and its geometry (None: the loader's own seq_len and document masking, and a micro batch of as many
    tokens as the loader's)."""

    name: str
    end_step: int
    weights: dict[str, float]  # normalised: sums to 1
    seq_len: int | None = None
    batch_size: int | None = None
    document_positions: bool | None = None

    def resolved(
        self,
        seq_len: int,
        batch_size: int,
        document_positions: bool,
        tokens_per_step: int,
        world: int,
        where: Path,
    ) -> LoaderStage:
        """The stage with the loader's own geometry where it sets none, checked against the global batch of
        `tokens_per_step` tokens (the same in every stage: a longer stage reads fewer, longer windows)."""
        length = self.seq_len or seq_len
        micro = self.batch_size or max(1, batch_size * seq_len // length)  # config/stages.py's rule
        masking = document_positions if self.document_positions is None else self.document_positions
        if tokens_per_step % length or (tokens_per_step // length) % (micro * world):
            raise DataError(
                f"{where}: stage {self.name!r}: a global batch of {tokens_per_step} tokens is not a whole number "
                f"of micro batches of {micro} x {length} tokens x {world} processes; change the batch, the "
                "stage's seq_len or its micro_batch_size"
            )
        return LoaderStage(self.name, self.end_step, self.weights, length, micro, masking)


def loader_stages(train_cfg, total_steps: int) -> list[LoaderStage]:
    """`train.data_stages` of a recipe as loader stages over a run of `total_steps` optimizer steps."""
    ends = train_cfg.stage_end_steps(total_steps)
    return [
        LoaderStage(
            stage.name or f"stage-{i}",
            end,
            stage.weight_shares(),
            geometry.seq_len,
            geometry.micro_batch_size,
            geometry.document_masking,
        )
        for i, (stage, end, geometry) in enumerate(
            zip(train_cfg.data_stages, ends, stage_geometries(train_cfg))
        )
    ]


def realised_shares(
    stages: list[LoaderStage], drawn: np.ndarray, source_names: list[str], seq_len: int
) -> list[dict]:
    """Per stage: requested weights, tokens drawn (windows x the stage's length) and each source's realised
    share, from `drawn` (windows per stage per source)."""
    out = []
    for i, stage in enumerate(stages):
        total = int(drawn[i].sum())
        out.append(
            {
                "stage": stage.name,
                "index": i,
                "end_step": stage.end_step,
                "tokens": total * (stage.seq_len or seq_len),
                "requested": {n: round(stage.weights[n], 6) for n in source_names if n in stage.weights},
                "realised": {
                    n: round(int(d) / total, 6) if total else 0.0
                    for n, d in zip(source_names, drawn[i])
                    if n in stage.weights or d
                },
            }
        )
    return out

"""The trainer's progress counters: what a checkpoint's `state.json` holds and a resume puts back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.train.stability import SpikeGuard


class TrainingError(PretrainError):
    """Training cannot continue (e.g. rollbacks exhausted); the message says why and what to do."""


@dataclass
class TrainState:
    guard: SpikeGuard
    step: int = 0  # optimizer steps taken (rewound by a rollback)
    tokens_seen: int = 0  # tokens consumed, rolled-back steps included
    attempts: int = 0  # optimizer steps attempted by this process; unlike `step`, never rolled back
    last_good: Path | None = None  # the newest checkpoint written or restored by this process
    stopping: bool = False  # every rank agreed to stop after this step (a signal arrived)
    stop_signal: int = 0  # the signal that stopped the run (the largest number any rank received)

    def state_dict(self, world_size: int, total_steps: int) -> dict:
        """The content of a checkpoint's state.json."""
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "guard": self.guard.state_dict(),
            "world_size": world_size,
            "total_steps": total_steps,
        }

    def load_state_dict(self, saved: dict, folder: Path) -> None:
        """Back to a checkpoint's counters (they do not depend on the world size that wrote them); rollbacks
        already used by this process stay counted."""
        self.step, self.tokens_seen = saved["step"], saved["tokens_seen"]
        rollbacks = self.guard.rollbacks
        self.guard.load_state_dict(saved["guard"])
        self.guard.rollbacks = max(rollbacks, self.guard.rollbacks)
        self.last_good = folder

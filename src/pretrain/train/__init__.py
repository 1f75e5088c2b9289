"""The training loop (`pretrain train`): see `loop.py`."""

from pretrain.train.loop import Trainer, TrainingError, run_training

__all__ = ["Trainer", "TrainingError", "run_training"]

"""The process's random number generator states (Python, NumPy, torch CPU and CUDA) as plain JSON data.

Checkpoints store them per rank so a resume continues the exact random streams; `preserved_rng`
lets evaluation run without consuming them, so evaluating cannot change the training trajectory.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """Every RNG state of this process, JSON-serialisable."""
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
    """Restore what `rng_state` returned."""
    random.setstate(_tupled(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


class preserved_rng:
    """Context manager: the RNG states on exit are those on entry, whatever ran inside."""

    def __enter__(self) -> None:
        self.state = rng_state()

    def __exit__(self, *exc) -> bool:
        set_rng_state(self.state)
        return False


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x

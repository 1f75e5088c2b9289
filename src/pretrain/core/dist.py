"""Process-group helpers shared by the data stages and the training loop.

On a machine without CUDA, `accelerate launch --multi_gpu --num_processes N` starts N processes but
accelerate then treats each as a lone process unless told to use the CPU; passing `cpu=True` gives a real
gloo process group (MULTI_CPU), which is what 2-rank CPU runs and tests need.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def force_cpu() -> bool:
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


def partial_state():
    from accelerate import PartialState

    return PartialState(cpu=force_cpu())

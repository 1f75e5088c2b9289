"""The precision training runs in: `train.precision` decided for the device, and the casts it needs.

`auto` is bf16 autocast on CUDA devices with bf16 support and fp32 elsewhere; `bf16-mixed-if-native` also takes
bf16 on a CPU that multiplies it natively; `bf16-true` keeps the parameters (and so the AdamW state) in bf16.
"""

from __future__ import annotations

import torch

from pretrain.config import Recipe
from pretrain.core.dist import force_cpu


def native_bf16() -> bool:
    """The device training runs on multiplies bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16
    or AMX (elsewhere CPU autocast emulates bf16 matmuls, slower than fp32)."""
    if torch.cuda.is_available() and not force_cpu():
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private: may go away
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def precision_that_runs(recipe: Recipe) -> str:
    """`train.precision` with `auto` / `bf16-mixed-if-native` decided: bf16-mixed on a CUDA device with
    bf16 (for the latter also on a CPU with native bf16), else fp32 (the start record of metrics.jsonl keeps
    it; the model card shows it)."""
    p = recipe.train.precision
    if p == "auto":
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if p == "bf16-mixed-if-native":
        return "bf16-mixed" if native_bf16() else "fp32"
    return p


def mixed_precision(recipe: Recipe) -> str:
    """accelerate's `mixed_precision` for `train.precision`."""
    return "bf16" if precision_that_runs(recipe) == "bf16-mixed" else "no"


def cast_parameters_to_bf16(model: torch.nn.Module) -> None:
    """bf16-true: parameters (and so the AdamW state) in bf16; floating buffers stay fp32.

    A plain `model.to(bfloat16)` also rounds buffers such as RoPE's `inv_freq`, which are not saved: a
    reloaded model recomputes them in fp32, and its logits differ from the trained model's (more so at
    long positions).
    """
    buffers = {name: b for name, b in model.named_buffers() if b.is_floating_point()}
    model.to(torch.bfloat16)
    for name, buffer in buffers.items():
        module_name, _, attr = name.rpartition(".")
        model.get_submodule(module_name)._buffers[attr] = buffer

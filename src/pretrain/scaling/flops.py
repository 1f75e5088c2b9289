"""Training FLOPs and device peaks — the one home of the numbers behind MFU and `pretrain plan`.

Model FLOPs per token (the PaLM appendix-B convention, also used by nanochat and torchtitan):

    6 * N_matmul  +  12 * n_layers * hidden_size * seq_len

N_matmul counts every weight that takes part in a matrix multiply: all non-embedding parameters
plus the output head (vocab x hidden) — the head is real compute even when tied to the input
embedding, while the embedding lookup is not. The second term is attention's score and value
matmuls (forward + backward), counted for the full square as is conventional.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from pretrain.core.errors import PretrainError


@dataclass(frozen=True)
class GPUSpec:
    name: str
    bf16_tflops: float  # dense peak, no sparsity
    memory_gb: float


GPU_SPECS: dict[str, GPUSpec] = {
    "h100": GPUSpec("NVIDIA H100 SXM", 989.0, 80),
    "h100-pcie": GPUSpec("NVIDIA H100 PCIe", 756.0, 80),
    "h200": GPUSpec("NVIDIA H200", 989.0, 141),
    "b200": GPUSpec("NVIDIA B200", 2250.0, 180),
    "a100": GPUSpec("NVIDIA A100 SXM", 312.0, 80),
    "a100-40gb": GPUSpec("NVIDIA A100 40GB", 312.0, 40),
    "l40s": GPUSpec("NVIDIA L40S", 362.0, 48),
    "a10g": GPUSpec("NVIDIA A10G", 125.0, 24),
    "l4": GPUSpec("NVIDIA L4", 121.0, 24),
    "rtx4090": GPUSpec("NVIDIA RTX 4090", 165.0, 24),
    "mi300x": GPUSpec("AMD MI300X", 1307.0, 192),
}


def gpu_spec(name: str) -> GPUSpec:
    key = name.lower().replace("_", "-")
    if key not in GPU_SPECS:
        raise PretrainError(f"unknown GPU {name!r}; known: {', '.join(sorted(GPU_SPECS))}")
    return GPU_SPECS[key]


def device_peak_flops(device_name: str | None) -> float | None:
    """Peak bf16 FLOP/s for a CUDA device name (torch.cuda.get_device_name), None when unknown/CPU."""
    if not device_name:
        return None
    name = device_name.lower()
    for key, marker in (
        ("h200", "h200"),
        ("b200", "b200"),
        ("h100-pcie", "h100 pcie"),
        ("h100", "h100"),
        ("a100", "a100"),
        ("l40s", "l40s"),
        ("a10g", "a10g"),
        ("l4", " l4"),
        ("rtx4090", "4090"),
        ("mi300x", "mi300"),
    ):
        if marker in name or (marker.strip() == name):
            return GPU_SPECS[key].bf16_tflops * 1e12
    return None


def _get(config: PretrainedConfig, *names: str) -> int:
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int):
            return v
    raise ValueError(f"config {type(config).__name__} has none of {names}")


def flops_per_token(config: PretrainedConfig, non_embedding_params: int, seq_len: int) -> float:
    """Training (forward + backward) model FLOPs per token; see the module docstring."""
    hidden = _get(config, "hidden_size", "n_embd", "d_model")
    layers = _get(config, "num_hidden_layers", "n_layer", "num_layers")
    n_matmul = non_embedding_params + config.vocab_size * hidden
    return 6.0 * n_matmul + 12.0 * layers * hidden * seq_len


def training_flops(config: PretrainedConfig, non_embedding_params: int, seq_len: int, tokens: int) -> float:
    return flops_per_token(config, non_embedding_params, seq_len) * tokens


def budget_flops(flops: float | None, gpu_hours: float | None, gpu: str | None, mfu: float) -> float:
    """A compute budget in FLOPs: `flops` as given, or `gpu_hours` on `gpu` at `mfu` of its bf16 peak."""
    if flops is not None:
        return float(flops)
    if gpu_hours is None or not gpu:
        raise PretrainError("a budget needs --budget-flops C, or --budget-gpu-hours H with --gpu NAME")
    return gpu_hours * 3600 * gpu_spec(gpu).bf16_tflops * 1e12 * mfu

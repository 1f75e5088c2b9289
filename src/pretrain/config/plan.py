"""Recipe section `plan`: the hardware assumed by `pretrain plan` for GPU-hour estimates."""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import Section


class PlanConfig(Section):
    gpu: str = Field(
        "h100",
        description="GPU assumed by `pretrain plan` for time and memory: h100, h200, a100, a10g, l4, ... "
        "(see scaling.flops.GPU_SPECS); --gpu overrides it",
    )
    num_gpus: int = Field(8, ge=1, description="GPUs the run is planned on (wall-clock = GPU-hours / this)")
    mfu: float = Field(
        0.4,
        gt=0,
        le=1,
        description="assumed model-FLOPs utilisation (0-1) for the GPU-hour estimate; "
        "set it from a measured run (metrics.jsonl reports mfu)",
    )
    usd_per_gpu_hour: float | None = Field(
        None,
        gt=0,
        description="price of one GPU-hour in US dollars; `pretrain plan` prices the run with it "
        "(null = no cost shown). On-demand H100s rent for roughly 2-4 $/h",
    )

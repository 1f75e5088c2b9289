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
    gpu_purchase_usd: float | None = Field(
        None,
        gt=0,
        description="owned hardware: what one GPU cost with its share of the server and network, in US dollars; "
        "a GPU-hour then costs its depreciation over gpu_life_years plus its power (gpu_power_kw x pue x "
        "usd_per_kwh). null = rented at usd_per_gpu_hour",
    )
    gpu_life_years: float = Field(
        4.0,
        gt=0,
        description="owned hardware: years over which the GPU's price is depreciated (hours of use)",
    )
    gpu_power_kw: float = Field(
        1.0,
        gt=0,
        description="owned hardware: kilowatts one GPU draws with its share of the server (an H100 SXM node: "
        "~10 kW for 8 GPUs, so ~1.3)",
    )
    pue: float = Field(
        1.3,
        ge=1.0,
        description="owned hardware: the data centre's power usage effectiveness (cooling overhead)",
    )
    usd_per_kwh: float = Field(
        0.12, gt=0, description="owned hardware: the price of a kilowatt-hour in US dollars"
    )
    engineering_usd: float | None = Field(
        None,
        ge=0,
        description="engineering time for the run in US dollars, added to the compute cost in `pretrain plan` "
        "and taken off a --budget-usd before it buys GPU-hours (null = not counted)",
    )

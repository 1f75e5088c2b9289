"""Recipe section `plan`: the hardware assumed by `pretrain plan` for GPU-hour estimates."""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import Section


class PlanConfig(Section):
    gpu: str = Field("h100", description="h100, h200, a100, a10g, l4, ... (see planning.GPU_SPECS)")
    num_gpus: int = Field(8, ge=1)
    mfu: float = Field(0.4, gt=0, le=1, description="assumed model-FLOPs utilisation for the estimate")

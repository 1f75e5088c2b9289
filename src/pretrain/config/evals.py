"""Recipe section `eval`: lm-eval benchmarks run in the loop and on checkpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pretrain.config.base import Section


class LocalTask(Section):
    """A benchmark read from a local file and turned into an lm-eval task (see evaluation/tasks)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    format: Literal[
        "mc_query_choices", "lambada_context", "winogrande_partial", "blimp_pairs", "text_rolling"
    ]
    path: str = Field(min_length=1, description="file path, relative to the recipe file")
    limit: int | None = Field(None, gt=0)


class EvalConfig(Section):
    enabled: bool = True
    every_fraction: float = Field(0.1, gt=0, le=1)
    tasks: list[str] = Field(
        default_factory=lambda: ["val_bpb"], description="built-in or lm-eval (Hub) task names"
    )
    local_tasks: list[LocalTask] = Field(default_factory=list)
    limit: int | None = Field(None, gt=0, description="max examples per task")
    batch_size: int = Field(8, gt=0)
    num_fewshot: int = Field(0, ge=0)

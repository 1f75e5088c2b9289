"""Recipe section `ladder`: the small runs `pretrain ladder` trains to fit the recipe's own scaling law.

The rungs are models of the recipe's family (its model keys with hidden size, depth, heads and MLP width
scaled down) at `sizes` sizes spread geometrically between `smallest` and `largest` times the target's
non-embedding parameters, each trained on every token budget of `budgets`. Per size, the longest budget
is one warmup-stable-decay run; the shorter budgets branch their decay from its stable-phase checkpoints.
`executor` says where the rungs train: one after another here, or one Slurm array task per size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pretrain.config.base import Section
from pretrain.config.data import SLURM_TIME, SlurmConfig

MIN_SPAN = 10.0  # largest / smallest: a ladder over less than 10x in size cannot pin the size exponent


class LadderSlurmConfig(SlurmConfig):
    """The data executor's Slurm settings (partition, qos, memory, venv, extra #SBATCH options), for the
    rungs' job array (one task per size: its long run, then its branches) and the fit job after it."""

    time: str = Field(
        "24:00:00",
        pattern=SLURM_TIME,
        description="wall-clock limit of each array task (one size: its long run and its branches), "
        "[D-]HH:MM:SS; a task that times out resumes from its last checkpoint when `pretrain ladder` is re-run",
    )
    cpus_per_task: int = Field(8, ge=1, description="CPUs per array task (data loading, the launcher)")
    gpus_per_task: int = Field(
        0,
        ge=0,
        description="GPUs per array task (--gpus-per-task); 0 = none requested. Match the recipe's "
        "accelerate_config: each task launches the rungs as the recipe's training is launched",
    )


class LadderConfig(Section):
    sizes: int = Field(
        4,
        ge=3,
        le=6,
        description="model sizes of the ladder (3-6); at least 3 separate the floor E from the size term",
    )
    smallest: float = Field(
        0.03,
        gt=0,
        lt=1,
        description="smallest rung's non-embedding parameters as a fraction of the target's (0-1)",
    )
    largest: float = Field(
        0.4,
        gt=0,
        le=1,
        description="largest rung's non-embedding parameters as a fraction of the target's (0-1); "
        "at least 10x `smallest`",
    )
    budgets: list[float] = Field(
        default_factory=lambda: [5.0, 10.0, 20.0],
        min_length=2,
        max_length=6,
        description="token budgets each size is trained on (2-6 distinct values), in `budget_unit`; "
        "the longest is one run per size, the others branch their decay from it",
    )
    budget_unit: Literal["tokens_per_param", "target_fraction"] = Field(
        "tokens_per_param",
        description="`tokens_per_param`: budgets are tokens per non-embedding parameter of each rung "
        "(5-20 is usual on GPUs); `target_fraction`: budgets are fractions of the target run's tokens, "
        "the same for every size (cheap where the run is short, e.g. the CPU demo)",
    )
    global_batch_tokens: int | None = Field(
        None,
        gt=0,
        description="tokens per optimizer step of every rung; null = train.global_batch_tokens. Small "
        "rungs need a smaller batch to take enough steps; a multiple of micro_batch_size * seq_len * processes",
    )
    micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="sequences per device per forward pass in the rungs; null = train.micro_batch_size",
    )
    warmup_fraction: float = Field(
        0.05,
        ge=0,
        lt=0.5,
        description="linear warmup of every run of a size, as a fraction of that size's shortest budget "
        "(0-0.5); the same warmup for all its budgets, so that branched decays start from the same run",
    )
    min_steps: int = Field(
        10,
        ge=2,
        description="fewest optimizer steps a rung may have; a shorter budget is an error (lower "
        "global_batch_tokens or raise the budgets)",
    )

    executor: Literal["local", "slurm"] = Field(
        "local",
        description="where the rungs train: `local` (one after another in this process or its "
        "`accelerate launch`) or `slurm` (one job array, a task per size, then a fit job after it; needs "
        "`ladder.slurm` and a filesystem the nodes share)",
    )
    slurm: LadderSlurmConfig | None = Field(
        None,
        description="Slurm settings of the rungs' job array and fit job; required when executor is slurm",
    )

    @model_validator(mode="after")
    def _ranges(self) -> LadderConfig:
        if self.largest < MIN_SPAN * self.smallest:
            raise ValueError(
                f"largest / smallest = {self.largest / self.smallest:.3g}; the ladder must span at least "
                f"{MIN_SPAN:g}x in size (lower smallest or raise largest)"
            )
        if len(set(self.budgets)) != len(self.budgets) or any(b <= 0 for b in self.budgets):
            raise ValueError(f"budgets {self.budgets} must be distinct positive numbers")
        if self.budget_unit == "target_fraction" and max(self.budgets) > 1:
            raise ValueError(
                f"budgets {self.budgets}: with budget_unit target_fraction each is a fraction (0-1] of the "
                "target's tokens"
            )
        if self.executor == "slurm" and self.slurm is None:
            raise ValueError("executor slurm needs a `slurm:` block (at least `partition`)")
        return self

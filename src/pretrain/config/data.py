"""Recipe section `data`: its sources (sources.py), normalisation, dedup, decontamination, mixture, executor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pretrain.config.base import SEED_LIMIT, Section
from pretrain.config.sources import Source
from pretrain.core.slurm import SBATCH_OPTION, sbatch_value_problem, shell_word_problem


class NormalizeConfig(Section):
    unicode_nfc: bool = Field(
        True,
        description="compose Unicode to NFC so visually equal strings have equal bytes (helps dedup); "
        "leave on unless the corpus must stay byte-exact",
    )
    strip_trailing_whitespace: bool = Field(
        True, description="remove spaces and tabs at line ends; leading indentation is never touched"
    )
    max_blank_lines: int = Field(
        2, ge=1, description="longer runs of blank lines are shortened to this many (lines)"
    )


class DedupConfig(Section):
    """Exact dedup on a normalised hash, then MinHash LSH near-dup removal across all sources.

    With `bands` x `rows` hashes, two documents of Jaccard similarity s collide in some band with
    probability 1 - (1 - s^rows)^bands: 14 x 8 puts the 50% point near s = 0.72.
    """

    exact: bool = Field(
        True,
        description="drop documents whose text equals an earlier one up to case and whitespace (128-bit hash)",
    )
    near: bool = Field(
        True,
        description="drop near-duplicates found by MinHash LSH across all sources; "
        "set false to save time on already-deduplicated datasets",
    )
    ngram: int = Field(5, ge=1, description="word n-gram size of the MinHash shingles (words)")
    bands: int = Field(
        14,
        ge=1,
        description="LSH bands; more bands catch less similar pairs (lower the similarity threshold)",
    )
    rows: int = Field(
        8,
        ge=1,
        description="MinHash rows per band; more rows demand more similar pairs (raise the threshold). "
        "bands x rows hashes are computed per document",
    )
    seed: int = Field(
        1,
        ge=0,
        lt=SEED_LIMIT,
        description="seed of the MinHash permutations; changing it changes which pairs collide",
    )


class DecontamConfig(Section):
    enabled: bool = Field(
        True,
        description="drop training documents that share a word n-gram with an evaluation item "
        "(eval.tasks and eval.local_tasks); set false only when no benchmark is reported",
    )
    ngram: int = Field(
        13,
        ge=4,
        description="window length in words (13 as in GPT-3 / the Pile); lower catches more, "
        "with more false positives",
    )
    lm_eval_tasks: bool = Field(
        True,
        description="also check the lm-eval tasks named in eval.tasks, through their datasets (Hub or cache); "
        "a task whose data cannot be loaded is listed as unchecked in the report",
    )


class MixtureConfig(Section):
    target_tokens: int | None = Field(
        None,
        gt=0,
        description="mix size in tokens (packed to within about a document per mix file); usually the "
        "training tokens (one epoch). Null with target_bytes null = the largest mix that needs no upsampling",
    )
    target_bytes: int | None = Field(
        None,
        gt=0,
        description="mix size in bytes of text, turned into tokens with each source's measured bytes per "
        "token; the alternative to target_tokens (set one, not both)",
    )
    bytes_per_token: float = Field(
        4.0,
        gt=0,
        description="unused since packing measures bytes per token on each source (kept so older recipes "
        "validate); `pretrain pack` records the real values in tokens/manifest.json",
    )
    shard_docs: int = Field(
        20_000,
        gt=0,
        description="documents per mix/<source>/part-*.jsonl file, the unit packing tasks share out; "
        "changes file sizes and which documents a downsampled source keeps, not the shares",
    )

    @model_validator(mode="after")
    def _one_target(self) -> MixtureConfig:
        if self.target_tokens is not None and self.target_bytes is not None:
            raise ValueError("set target_tokens or target_bytes, not both")
        return self


SLURM_TIME = r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$"  # sbatch --time: [D-]HH:MM:SS


class SlurmConfig(Section):
    """Passed to datatrove's SlurmPipelineExecutor (one job array for the document pass, one job after it)."""

    partition: str = Field(min_length=1, description="Slurm partition the jobs are submitted to")
    time: str = Field(
        "04:00:00",
        pattern=SLURM_TIME,
        description="wall-clock limit of each Slurm task, [D-]HH:MM:SS; raise it when tasks time out "
        "(or raise data.executor.tasks to make each shorter)",
    )
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task of the document-pass job array")
    mem_per_cpu_gb: int = Field(
        2, ge=1, description="memory per CPU in GB; raise it if tasks are killed for memory"
    )
    qos: str = Field("normal", description="Slurm quality-of-service of the jobs")
    venv_path: str | None = Field(
        None,
        description="virtualenv activated in the jobs (path on the nodes); null = the nodes' default Python",
    )
    sbatch_args: dict[str, str | int] = Field(
        default_factory=dict,
        description="extra #SBATCH options as option: value (e.g. account: myproj, constraint: cpu); no control "
        "characters (a newline would start a shell line of the batch script)",
    )

    @field_validator("partition", "qos")
    @classmethod
    def _one_sbatch_line(cls, value: str) -> str:
        problem = sbatch_value_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("venv_path")
    @classmethod
    def _a_shell_word(cls, value: str | None) -> str | None:
        problem = shell_word_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("sbatch_args")
    @classmethod
    def _sbatch_options(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for option, setting in value.items():
            if not SBATCH_OPTION.match(option):
                raise ValueError(f"{option!r} is not an sbatch option name (letters, digits, - and _)")
            problem = sbatch_value_problem(setting)
            if problem:
                raise ValueError(f"{option}: {problem}")
        return value


class ExecutorConfig(Section):
    """Where the data stages' tasks run (datatrove executors): curation's pass, dedup and mix files, and packing."""

    type: Literal["local", "slurm", "ray"] = Field(
        "local",
        description="`local` (data.workers processes on this machine), `slurm` (a chain of dependent job "
        "arrays; needs `slurm:`, a shared filesystem) or `ray` (`pip install ray`; RAY_ADDRESS or a local cluster)",
    )
    tasks: int | None = Field(
        None,
        ge=1,
        description="tasks of each data step; null = data.workers. Raise it to spread curation and packing "
        "over a cluster; each task reads only its files / row groups / Hub shards. Any value gives the same "
        "documents, except that source budgets are split over the tasks",
    )
    slurm: SlurmConfig | None = Field(None, description="Slurm settings; required when type is slurm")
    ray_cpus_per_task: int = Field(1, ge=1, description="type ray: CPUs reserved per task")

    @model_validator(mode="after")
    def _slurm_settings(self) -> ExecutorConfig:
        if self.type == "slurm" and self.slurm is None:
            raise ValueError("type slurm needs a `slurm:` block (at least `partition`)")
        return self


class DataConfig(Section):
    sources: list[Source] = Field(
        min_length=1,
        description="where the text comes from: a list of sources, each `type: hub | local | builtin` "
        "with a name, a weight and its filters",
    )
    normalize: NormalizeConfig = Field(
        default_factory=NormalizeConfig, description="text normalisation applied to every document first"
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig, description="exact and MinHash near-duplicate removal across sources"
    )
    decontaminate: DecontamConfig = Field(
        default_factory=DecontamConfig, description="removal of documents overlapping the evaluation tasks"
    )
    mixture: MixtureConfig = Field(
        default_factory=MixtureConfig,
        description="size of the mix; default: the largest mix that needs no upsampling",
    )
    val_fraction: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="share of documents (0-0.5) held out for validation loss and bits-per-byte; "
        "lower it for big mixes (0.001 is plenty at billions of tokens)",
    )
    workers: int = Field(
        2,
        ge=1,
        description="processes for curation (local executor) and packing; up to the CPU cores. "
        "Changes speed, not output",
    )
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig, description="where curation's per-document pass runs"
    )

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list) -> list:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

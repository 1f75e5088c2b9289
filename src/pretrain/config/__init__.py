"""The typed recipe: one YAML file with nested, strictly validated sections.

    from pretrain.config import load_recipe
    recipe = load_recipe("recipes/tiny/config.yaml", overrides=["train.steps=50"])

All problems in a recipe are collected and raised together as one `RecipeError` whose lines read
`file: dotted.key: problem (what to do)`, before any stage does work.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError

from pretrain.config.base import (
    SEED_LIMIT,
    UNION_TAGS,
    Section,
    apply_overrides,
    format_validation_error,
    load_yaml,
)
from pretrain.config.checks import combination_problems, file_problems
from pretrain.config.data import DataConfig
from pretrain.config.evals import EvalConfig, LocalTask
from pretrain.config.hub import HubConfig
from pretrain.config.ladder import LadderConfig
from pretrain.config.mixture import MixtureConfig
from pretrain.config.model import ModelConfig
from pretrain.config.model_checks import model_field_problems
from pretrain.config.plan import PlanConfig
from pretrain.config.sources import BuiltinSource, HubSource, LocalSource
from pretrain.config.tokenizer import TokenizerConfig
from pretrain.config.train import LENGTH_KEYS, TrainConfig
from pretrain.core.errors import RecipeError
from pretrain.core.layout import RunLayout
from pretrain.core.recipe_files import resolve_recipe

UNION_TAGS.update({"hub", "local", "builtin"})  # data.sources[].type

__all__ = [
    "Recipe",
    "load_recipe",
    "DataConfig",
    "TokenizerConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "HubConfig",
    "PlanConfig",
    "LadderConfig",
    "HubSource",
    "LocalSource",
    "BuiltinSource",
    "LocalTask",
]


class Recipe(Section):
    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="run name (letters, digits, _ . -): the default output folder outputs/<name>, "
        "the tracker run and the model card title",
    )
    description: str = Field("", description="one line on what the recipe trains; shown in the model card")
    seed: int = Field(
        1234,
        ge=0,
        lt=SEED_LIMIT,
        description="seeds curation sampling, the tokenizer's sample, the train/val split and, unless "
        "train.seed is set, model init and data order; a replicate run changes train.seed, which keeps the data",
    )
    output_dir: str | None = Field(
        None,
        description="folder of every stage's outputs; default outputs/<name>, relative to the working "
        "directory (--output-dir overrides it)",
    )
    accelerate_config: str | None = Field(
        None,
        description="default accelerate launch config (path, relative to the recipe); `pretrain plan` "
        "reads its num_processes for the batch split",
    )
    data: DataConfig = Field(description="curation: sources, filters, dedup, decontamination, mixture")
    tokenizer: TokenizerConfig = Field(
        default_factory=TokenizerConfig, description="the byte-level BPE trained on the mix (or reused)"
    )
    model: ModelConfig = Field(description="architecture (any transformers model_type) and its init")
    train: TrainConfig = Field(
        description="batch, length, optimizer, schedule, precision, checkpoints and stability"
    )
    eval: EvalConfig = Field(
        default_factory=EvalConfig, description="benchmarks in the loop and on checkpoints"
    )
    hub: HubConfig = Field(default_factory=HubConfig, description="model card and Hub upload")
    plan: PlanConfig = Field(
        default_factory=PlanConfig, description="hardware assumed by `pretrain plan` for estimates"
    )
    ladder: LadderConfig = Field(
        default_factory=LadderConfig,
        description="the small runs `pretrain ladder` trains to fit the recipe's own scaling law",
    )
    mixture: MixtureConfig = Field(
        default_factory=MixtureConfig,
        description="the proxy runs `pretrain mixture` trains to choose the data mix by measurement",
    )

    _path: Path | None = PrivateAttr(None)

    @property
    def train_seed(self) -> int:
        """What seeds model init and the data order: `train.seed`, else the recipe's `seed`."""
        return self.seed if self.train.seed is None else self.train.seed

    # ------------------------------------------------------------------ paths
    @property
    def path(self) -> Path | None:
        """The recipe file this was loaded from (None when built in code)."""
        return self._path

    @property
    def source_label(self) -> str:
        return str(self._path) if self._path else "<recipe>"

    def resolve_path(self, value: str) -> Path:
        """Resolve a path from the recipe: absolute, else relative to the recipe file, else to the CWD."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        if self._path is not None:
            candidate = self._path.parent / p
            if candidate.exists() or glob.has_magic(value) and glob.glob(str(candidate)):
                return candidate
        return Path.cwd() / p

    def absolute_path(self, value: str) -> str:
        """`resolve_path`, made absolute: a recipe loaded by a relative path resolves relative to the CWD, which
        a saved copy must not depend on (globs keep their pattern)."""
        return str(self.resolve_path(value).absolute())

    @property
    def out(self) -> Path:
        """The run's output directory."""
        return Path(self.output_dir or f"outputs/{self.name}").expanduser().absolute()

    @property
    def layout(self) -> RunLayout:
        """Every path of the run folder (core/layout.py)."""
        return RunLayout(self.out)

    # ------------------------------------------------------------ hashing
    def section_values(self, *sections: str) -> dict[str, Any]:
        """The named top-level sections as JSON-able values (what a stage's fingerprint reads)."""
        return {s: _jsonable(getattr(self, s)) for s in sections}

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named sections."""
        payload = self.section_values(*sections)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def values_as_run(self) -> dict[str, Any]:
        """The recipe's values with every path in it absolute (its launch config, local sources and tasks, a
        card template file, local tokenizer / parent folders, the output folder): the copy a run keeps
        (`recipe.resolved.yaml`, each checkpoint's) then loads and runs again from any folder."""
        data = self.model_dump(mode="json")
        data["output_dir"] = str(self.out.absolute())
        if self.accelerate_config:
            data["accelerate_config"] = self.absolute_path(self.accelerate_config)
        for src, raw in zip(self.data.sources, data["data"]["sources"]):
            if isinstance(src, LocalSource):
                raw["paths"] = [self.absolute_path(p) for p in src.paths]
        for task, raw in zip(self.eval.local_tasks, data["eval"]["local_tasks"]):
            raw["path"] = self.absolute_path(task.path)
        if self.resolve_path(self.hub.card_template).is_file():  # else the name of a shipped template
            data["hub"]["card_template"] = self.absolute_path(self.hub.card_template)
        for section, key in (("tokenizer", "pretrained"), ("model", "init_from")):
            spec = data[section].get(key)
            if spec and self.resolve_path(spec).is_dir():  # else a Hub id
                data[section][key] = self.absolute_path(spec)
        return data

    def accelerate_settings(self) -> dict | None:
        """The recipe's accelerate config file as a dict (None when absent or unreadable)."""
        if not self.accelerate_config:
            return None
        try:
            cfg = load_yaml(self.resolve_path(self.accelerate_config))
        except RecipeError:
            return None
        return cfg if isinstance(cfg, dict) else None

    def world_size_from_accelerate_config(self) -> int | None:
        n = (self.accelerate_settings() or {}).get("num_processes")
        return n if isinstance(n, int) else None  # accelerate's num_processes already counts all machines


def _jsonable(value: Any) -> Any:
    if isinstance(value, Section):
        return value.model_dump(mode="json")
    return value


# DeepSpeed partitions the optimizer (ZeRO-2) and weights (ZeRO-3) in its own engine format, which the
# checkpoint code does not write: a run would save rank 0's partition only and resume wrongly.


# ---------------------------------------------------------------------------------------------------
def load_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    output_dir: str | None = None,
    check_files: bool = True,
) -> Recipe:
    """Load, override and validate a recipe; raise `RecipeError` listing every problem found.

    `path` is a recipe YAML, or the name of a shipped recipe (`tiny`) when no such file exists.
    """
    path = resolve_recipe(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError([f"{path}: <root>: expected a mapping of sections (data, model, train, ...)"])
    if overrides:
        raw = apply_overrides(raw, overrides, alternatives=(tuple(f"train.{k}" for k in LENGTH_KEYS),))
    if output_dir is not None:
        raw["output_dir"] = str(output_dir)
    return validate_recipe(raw, source=path, check_files=check_files)


def validate_recipe(raw: dict, source: Path | str = "<recipe>", check_files: bool = True) -> Recipe:
    label = str(source)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, label)) from None
    recipe._path = Path(source) if label != "<recipe>" else None
    problems = model_field_problems(recipe, label)
    problems += combination_problems(recipe, label)
    if check_files:
        problems += file_problems(recipe, label)
    if problems:
        raise RecipeError(problems)
    return recipe

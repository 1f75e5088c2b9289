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
import re
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError

from pretrain.config.base import UNION_TAGS, Section, apply_overrides, format_validation_error, load_yaml
from pretrain.config.data import BuiltinSource, DataConfig, HubSource, LocalSource
from pretrain.config.evals import EvalConfig, LocalTask
from pretrain.config.hub import HubConfig
from pretrain.config.model import ModelConfig
from pretrain.config.plan import PlanConfig
from pretrain.config.tokenizer import TokenizerConfig
from pretrain.config.train import TrainConfig
from pretrain.core.errors import RecipeError
from pretrain.core.layout import RunLayout

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
    "HubSource",
    "LocalSource",
    "BuiltinSource",
    "LocalTask",
]


class Recipe(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 1234
    output_dir: str | None = Field(
        None, description="default: outputs/<name>, relative to the working directory"
    )
    accelerate_config: str | None = Field(
        None, description="default launch config (path, relative to the recipe)"
    )
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)

    _path: Path | None = PrivateAttr(None)

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
UNSUPPORTED_DEEPSPEED = (
    "DeepSpeed launches are not supported (its partitioned optimizer state is not checkpointed by this loop); "
    "use accelerate_configs/fsdp.yaml (FSDP2) to shard weights, gradients and optimizer state"
)


# ---------------------------------------------------------------------------------------------------
def load_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    output_dir: str | None = None,
    check_files: bool = True,
) -> Recipe:
    """Load, override and validate a recipe; raise `RecipeError` listing every problem found."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError([f"{path}: <root>: expected a mapping of sections (data, model, train, ...)"])
    if overrides:
        raw = apply_overrides(raw, overrides)
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
    problems = _check_model_fields(recipe, label)
    problems += _check_combinations(recipe, label)
    if check_files:
        problems += _check_files(recipe, label)
    if problems:
        raise RecipeError(problems)
    return recipe


def _check_model_fields(recipe: Recipe, label: str) -> list[str]:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    mt = recipe.model.model_type
    if mt not in CONFIG_MAPPING:
        close = sorted(k for k in CONFIG_MAPPING.keys() if k[:3] == mt[:3])[:5]
        hint = (
            f" (similar: {', '.join(close)})"
            if close
            else " (any transformers model_type, e.g. llama, qwen2, gpt2)"
        )
        return [f"{label}: model.model_type: unknown model type {mt!r}{hint}"]
    defaults = AutoConfig.for_model(mt)
    problems = []
    default_dict = defaults.to_dict()
    for key, value in recipe.model.hf_fields.items():
        if not hasattr(defaults, key) and not _consumed_kwarg(mt, key, value, default_dict):
            problems.append(
                f"{label}: model.{key}: not a field of the {mt} config; remove it or check its spelling"
            )
            continue
        default = getattr(defaults, key, None)
        if isinstance(default, bool) and not isinstance(value, bool):
            problems.append(f"{label}: model.{key}: expected true or false, got {value!r}")
        elif (
            isinstance(default, int)
            and not isinstance(default, bool)
            and not (isinstance(value, int) and not isinstance(value, bool))
        ):
            if not (default is None or value is None):
                problems.append(f"{label}: model.{key}: expected an integer, got {value!r}")
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            problems.append(f"{label}: model.{key}: must not be negative, got {value!r}")
        elif value == 0 and _SIZE_KEY.search(key) and isinstance(default, int) and default > 0:
            problems.append(f"{label}: model.{key}: must be at least 1, got 0")
    return problems


_SIZE_KEY = re.compile(r"size|^num_|layers|heads|_dim$|positions")


def _consumed_kwarg(model_type: str, key: str, value: Any, default_dict: dict) -> bool:
    """True for legacy kwargs a config folds into another field (e.g. rope_theta -> rope_parameters)."""
    from transformers import AutoConfig

    try:
        changed = AutoConfig.for_model(model_type, **{key: value}).to_dict()
    except Exception:  # a bad value for a real kwarg: let the type checks below report it
        return True
    nested = any(isinstance(v, dict) and key in v for v in changed.values())
    return nested or any(k != key and changed.get(k) != default_dict.get(k) for k in changed)


def _check_combinations(recipe: Recipe, label: str) -> list[str]:
    problems = []
    if (recipe.accelerate_settings() or {}).get("distributed_type") == "DEEPSPEED":
        problems.append(f"{label}: accelerate_config: {UNSUPPORTED_DEEPSPEED}")
    world = recipe.world_size_from_accelerate_config()
    if world:
        try:
            recipe.train.grad_accum_steps(world)
        except ValueError as exc:
            problems.append(f"{label}: train.global_batch_tokens: {exc}")
    fields = recipe.model.hf_fields
    heads, hidden = fields.get("num_attention_heads"), fields.get("hidden_size")
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 and hidden % heads:
        problems.append(
            f"{label}: model.hidden_size: {hidden} is not divisible by num_attention_heads={heads}"
        )
    kv = fields.get("num_key_value_heads")
    if isinstance(heads, int) and isinstance(kv, int) and kv > 0 and heads % kv:
        problems.append(
            f"{label}: model.num_key_value_heads: {heads} heads are not divisible by {kv} kv heads"
        )
    max_pos = fields.get("max_position_embeddings")
    if isinstance(max_pos, int) and max_pos < recipe.train.seq_len:
        problems.append(
            f"{label}: model.max_position_embeddings: {max_pos} < train.seq_len={recipe.train.seq_len}; raise it"
        )
    if recipe.hub.push_checkpoints and not recipe.hub.repo_id:
        problems.append(f"{label}: hub.push_checkpoints: needs hub.repo_id to be set")
    return problems


def _check_files(recipe: Recipe, label: str) -> list[str]:
    problems = []
    for i, src in enumerate(recipe.data.sources):
        if isinstance(src, LocalSource):
            for j, pattern in enumerate(src.paths):
                resolved = recipe.resolve_path(pattern)
                if glob.has_magic(pattern):
                    if not glob.glob(str(resolved), recursive=True):
                        problems.append(
                            f"{label}: data.sources.{i}.paths.{j}: no file matches {pattern!r} (source {src.name!r})"
                        )
                elif not resolved.exists():
                    problems.append(
                        f"{label}: data.sources.{i}.paths.{j}: file not found: {resolved} (source {src.name!r})"
                    )
    for i, task in enumerate(recipe.eval.local_tasks):
        if not recipe.resolve_path(task.path).exists():
            problems.append(
                f"{label}: eval.local_tasks.{i}.path: file not found: {recipe.resolve_path(task.path)}"
            )
    if recipe.tokenizer.pretrained and not recipe.resolve_path(recipe.tokenizer.pretrained).is_dir():
        problems.append(
            f"{label}: tokenizer.pretrained: not a tokenizer folder: {recipe.tokenizer.pretrained}"
        )
    if recipe.accelerate_config and not recipe.resolve_path(recipe.accelerate_config).is_file():
        problems.append(f"{label}: accelerate_config: file not found: {recipe.accelerate_config}")
    return problems

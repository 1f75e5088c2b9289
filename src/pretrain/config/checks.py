"""Checks of a whole recipe that one field's type cannot express: combinations across sections (batch
geometry, launch config), data stages, and files and folders that must exist (model fields against the
transformers config class: `model_checks`).

Each check returns `file: dotted.key: problem (what to do)` lines; `validate_recipe` reports them together.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING

from pretrain.config.context_checks import context_stage_problems, longest_seq_len
from pretrain.config.parallelism import launch_problems
from pretrain.config.refs import RefError, parse_pretrained_ref
from pretrain.config.sources import LocalSource
from pretrain.core.recipe_files import card_template_names, find_card_template

if TYPE_CHECKING:
    from pretrain.config import Recipe

UNSUPPORTED_DEEPSPEED = (
    "DeepSpeed launches are not supported (its partitioned optimizer state is not checkpointed by this loop); "
    "use accelerate_configs/fsdp.yaml (FSDP2) to shard weights, gradients and optimizer state"
)


# Newton-Schulz orthogonalises a whole matrix: DistributedMuon gathers FSDP / HSDP shards (dim 0) on one owner
# rank, but not tensor-parallel slices (split on either dim, and across a second mesh dimension)
MUON_UNDER_TP = (
    "muon orthogonalises whole matrices, gathering FSDP shards but not tensor-parallel slices; set "
    "parallelism_config_tp_size to 1 (FSDP2 / HSDP / replicas train with muon) or use adamw"
)


# the fused loss reads the LM head's whole weight outside the model's forward; an FSDP rank holds a shard of it
FUSED_CE_UNDER_FSDP = (
    "true needs the LM head's whole weight outside the forward, and FSDP shards it; "
    "set it to auto (off under FSDP) or false"
)


def combination_problems(recipe: Recipe, label: str) -> list[str]:
    problems = []
    settings = recipe.accelerate_settings()
    if (settings or {}).get("distributed_type") == "DEEPSPEED":
        problems.append(f"{label}: accelerate_config: {UNSUPPORTED_DEEPSPEED}")
    shape, mesh_problems = launch_problems(
        settings,
        f"accelerate_config {recipe.accelerate_config}",
        recipe.model.model_type,
        recipe.model.hf_fields,
    )
    problems += [f"{label}: {problem}" for problem in mesh_problems]
    # an FSDP launch or any mesh that cuts the weights (FSDP shards, tensor-parallel slices)
    sharded = (settings or {}).get("distributed_type") == "FSDP" or (shape is not None and shape.sharded)
    if shape is not None and shape.tp > 1 and recipe.train.optimizer.name == "muon":
        problems.append(f"{label}: train.optimizer.name: {MUON_UNDER_TP}")
    if sharded and recipe.train.fused_cross_entropy is True:
        problems.append(f"{label}: train.fused_cross_entropy: {FUSED_CE_UNDER_FSDP}")
    if settings and shape is not None and not mesh_problems:
        try:
            recipe.train.grad_accum_steps(shape.dp)
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
    max_pos, longest = fields.get("max_position_embeddings"), longest_seq_len(recipe)
    if isinstance(max_pos, int) and max_pos < longest:
        what = "train.seq_len" if longest == recipe.train.seq_len else "the longest train.data_stages seq_len"
        problems.append(f"{label}: model.max_position_embeddings: {max_pos} < {what}={longest}; raise it")
    if recipe.tokenizer.extend and not (recipe.tokenizer.pretrained or recipe.model.init_from):
        problems.append(
            f"{label}: tokenizer.extend: extends a reused tokenizer, but none is set; set tokenizer.pretrained "
            "or model.init_from (a tokenizer trained on the mix needs no extension: raise tokenizer.vocab_size)"
        )
    if recipe.hub.push_checkpoints and not recipe.hub.repo_id:
        problems.append(f"{label}: hub.push_checkpoints: needs hub.repo_id to be set")
    problems += data_stage_problems(recipe, label)
    problems += context_stage_problems(recipe, label)
    return problems


def data_stage_problems(recipe: Recipe, label: str) -> list[str]:
    """train.data_stages: known sources, shares that add up to 1 (or token counts to the run's tokens), and
    at least one optimizer step per stage when the run's length is known from the recipe alone."""
    train = recipe.train
    stages = train.data_stages
    if not stages:
        return []
    problems = []
    names = [src.name for src in recipe.data.sources]
    for i, stage in enumerate(stages):
        for source in stage.weights:
            if source not in names:
                problems.append(
                    f"{label}: train.data_stages.{i}.weights.{source}: no source named {source!r} in "
                    f"data.sources (sources: {', '.join(names)})"
                )
    with_share = [i for i, stage in enumerate(stages) if stage.share is not None]
    if with_share and len(with_share) != len(stages):
        odd = next(i for i, stage in enumerate(stages) if stage.share is None)
        return problems + [
            f"{label}: train.data_stages.{odd}.tokens: stages {with_share} give a share; give every stage a "
            "share, or every stage a token count"
        ]
    run_tokens = train.tokens or (train.steps * train.global_batch_tokens if train.steps else None)
    if with_share:
        total = sum(stage.share for stage in stages)
        if abs(total - 1.0) > 1e-6:
            problems.append(
                f"{label}: train.data_stages: the stages' shares add up to {total:.6g}, not 1; make them "
                "fractions of the run's tokens that sum to 1"
            )
            return problems
    else:
        total = sum(stage.tokens for stage in stages)
        if run_tokens is None:
            problems.append(
                f"{label}: train.data_stages.0.tokens: the run's length is train.tokens_per_param, so its "
                "tokens are not known before the model is built; give each stage a share instead"
            )
            return problems
        if total != run_tokens:
            problems.append(
                f"{label}: train.data_stages: the stages' tokens add up to {total:,}, but the run trains "
                f"{run_tokens:,} tokens; make them add up, or give shares instead"
            )
            return problems
    if run_tokens is not None:
        total_steps = train.total_steps(0)
        start = 0
        for i, end in enumerate(train.stage_end_steps(total_steps)):
            if end <= start:
                problems.append(
                    f"{label}: train.data_stages.{i}: gets no optimizer step of the run's {total_steps}; "
                    "give it a larger share or remove it"
                )
            start = max(start, end)
    return problems


def file_problems(recipe: Recipe, label: str) -> list[str]:
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
                elif not (
                    resolved.is_file() or resolved.is_dir()
                ):  # a FIFO hung curation, a device never ends
                    problems.append(
                        f"{label}: data.sources.{i}.paths.{j}: {resolved} is not a regular file (a pipe, socket or "
                        f"device); copy the text into a file (source {src.name!r})"
                    )
    for i, task in enumerate(recipe.eval.local_tasks):
        if not recipe.resolve_path(task.path).exists():
            problems.append(
                f"{label}: eval.local_tasks.{i}.path: file not found: {recipe.resolve_path(task.path)}"
            )
    for key, spec in (
        ("tokenizer.pretrained", recipe.tokenizer.pretrained),
        ("model.init_from", recipe.model.init_from),
    ):
        if spec:
            try:  # a folder that exists, or a Hub id (downloaded when the stage runs)
                parse_pretrained_ref(spec, recipe.resolve_path, key)
            except RefError:
                problems.append(
                    f"{label}: {key}: {spec!r} is neither an existing folder nor a Hub id (`owner/name[@revision]`)"
                )
    problems += output_folder_problems(recipe, label)
    if recipe.accelerate_config and not recipe.resolve_path(recipe.accelerate_config).is_file():
        problems.append(f"{label}: accelerate_config: file not found: {recipe.accelerate_config}")
    if find_card_template(recipe.hub.card_template, recipe.resolve_path) is None:
        problems.append(missing_template_problem(recipe))
    return problems


def output_folder_problems(recipe: Recipe, label: str) -> list[str]:
    """The output folder is a folder, or can be made in a writable one (a regular file there was accepted and
    every stage then failed on it with a traceback)."""
    out = recipe.out
    if out.exists():
        if not out.is_dir():
            return [f"{label}: output_dir: {out} is a file, not a folder; name a folder (or remove the file)"]
        return (
            []
            if os.access(out, os.W_OK)
            else [f"{label}: output_dir: {out}: no write permission; pick another"]
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{label}: output_dir: {out} cannot be made: {parent} is a file, not a folder; pick another"]
    if not os.access(parent, os.W_OK):
        return [f"{label}: output_dir: {out} cannot be made: no write permission in {parent}; pick another"]
    return []


def missing_template_problem(recipe: Recipe) -> str:
    name = recipe.hub.card_template
    return (
        f"{recipe.source_label}: hub.card_template: template {name!r} not found (not a shipped template: "
        f"{', '.join(card_template_names())}; nor a file at {recipe.resolve_path(name)})"
    )

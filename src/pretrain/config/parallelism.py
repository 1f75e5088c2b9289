"""The device mesh a launch asks for: data-parallel replicas x FSDP shards x tensor parallel (x context parallel),
with the experts of a mixture of experts split over an expert-parallel group borrowed from the FSDP shards.

The sizes are accelerate's own: the `parallelism_config:` section of an accelerate config file
(`parallelism_config_dp_replicate_size`, `_dp_shard_size`, `_tp_size`, `_cp_size`), which `accelerate launch
--config_file` exports to every process as `PARALLELISM_CONFIG_*_SIZE`. Training reads them from there and builds
the mesh with torch itself (accelerate refuses a parallelism config on CPU ranks), so one code path serves CPU
ranks over gloo and GPUs over NCCL. In order, the first that applies:

1. `PARALLELISM_CONFIG_*` in the environment (`accelerate launch` exported them);
2. the `parallelism_config:` of the recipe's `accelerate_config` when it is for this many processes
   (`accelerate launch --multi_gpu` on the command line drops the file's section without a word);
3. an FSDP launch (`distributed_type: FSDP`, exported as `ACCELERATE_USE_FSDP`): every process a shard,
   its plugin's `fsdp_reshard_after_forward` kept;
4. otherwise every process is a data-parallel replica (DDP).

Expert parallelism has no key of accelerate's own: `parallelism_config_ep_size` is this project's. In a
`parallelism_config:` section it is read with the others (accelerate's config loader keeps the unknown key and
ignores it), but `accelerate launch` exports only the keys it knows, so under a launch the size comes from
`PARALLELISM_CONFIG_EP_SIZE` when that is set in the environment (the launcher passes the environment on), else
from the recipe's `accelerate_config` file when its section asks for the very mesh the launch exported (it is the
file launched: `pretrain run` / `pretrain train` launch the recipe's own), else 1. It is not a dimension of its
own: the ep ranks are taken from dp_shard (as torchtitan does), see `EP_RULE`.

Everything here is plain arithmetic on sizes, so `pretrain validate` and the launch check a mesh against the
model before any process starts; `train/parallel/` builds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pretrain.config.expert_checks import EP_SIZE_KEY, ep_problem, expert_problems, has_expert_parallel_plan
from pretrain.config.mesh_shape import SIZE_KEYS, MeshError, MeshShape

USE_PARALLELISM_CONFIG = "ACCELERATE_USE_PARALLELISM_CONFIG"
USE_FSDP = "ACCELERATE_USE_FSDP"
# context parallelism: torch's ring attention takes only `is_causal` SDPA on CUDA, while transformers' Llama builds
# an explicit mask from the load-balanced position ids (prototyped: it fails on CPU and would on GPU)
CP_UNSUPPORTED = (
    "context parallelism is not supported: transformers' attention builds an explicit mask from the sharded "
    "position ids, which torch's ring attention cannot take; set it to 1 (use tensor parallel or shorter "
    "sequences)"
)


def _size(value: Any, key: str, where: str) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise MeshError(f"{where}: {key}: expected a whole number of processes, got {value!r}") from None
    if size < 1:
        raise MeshError(f"{where}: {key}: must be at least 1, got {size}")
    return size


def parallelism_section(settings: Mapping | None, where: str = "accelerate_config") -> MeshShape | None:
    """The sizes of an accelerate config file's `parallelism_config:` section, or None without one."""
    section = (settings or {}).get("parallelism_config")
    if not isinstance(section, Mapping):
        return None
    label = f"{where}: parallelism_config"
    sizes = {dim: _size(section.get(key, 1), key, label) for dim, key in SIZE_KEYS.items()}
    return MeshShape(**sizes, ep=_size(section.get(EP_SIZE_KEY, 1), EP_SIZE_KEY, label), source=label)


def shape_from_settings(settings: Mapping | None, where: str = "accelerate_config") -> MeshShape:
    """The mesh an accelerate config file launches (validation, `pretrain plan`): its `parallelism_config:`, else
    FSDP over `num_processes`, else `num_processes` data-parallel replicas."""
    settings = settings or {}
    shape = parallelism_section(settings, where)
    if shape is not None:
        return shape
    n = _size(settings.get("num_processes", 1) or 1, "num_processes", where)
    if str(settings.get("distributed_type", "")).upper() == "FSDP":
        return MeshShape(
            dp_shard=n, reshard_after_forward=_reshard(settings.get("fsdp_config") or {}), source=where
        )
    return MeshShape(dp_replicate=n, source=where)


def _reshard(fsdp: Mapping) -> bool:
    """FSDP2's `fsdp_reshard_after_forward` (FSDP1's SHARD_GRAD_OP strategy means false)."""
    strategy = str(fsdp.get("fsdp_sharding_strategy", "")).upper()
    return str(fsdp.get("fsdp_reshard_after_forward", "true")).lower() == "true" and "GRAD_OP" not in strategy


def shape_for_launch(
    world: int,
    settings: Mapping | None = None,
    env: Mapping[str, str] | None = None,
    where: str = "accelerate_config",
) -> MeshShape:
    """The mesh of a running launch of `world` processes (module docstring: the order the sources are read in);
    raises MeshError when the sizes do not multiply to `world` or ask for what is not supported."""
    env = os.environ if env is None else env
    section = parallelism_section(settings, where)
    if section is not None and section.world != world:
        section = None  # the recipe's file is for another launch (a resume on another world size)
    if env.get(USE_PARALLELISM_CONFIG, "").lower() == "true":
        label = "accelerate launch (PARALLELISM_CONFIG_*)"
        sizes = {dim: _size(env.get(key.upper(), 1), key.upper(), label) for dim, key in SIZE_KEYS.items()}
        shape = MeshShape(**sizes, ep=_exported_ep(env, section, sizes, label), source=label)
    else:
        shape = section
    if shape is None and env.get(USE_FSDP, "").lower() == "true":
        strategy = env.get("FSDP_SHARDING_STRATEGY", "").upper()
        reshard = (
            env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true" and "GRAD_OP" not in strategy
        )
        shape = MeshShape(dp_shard=world, reshard_after_forward=reshard, source="accelerate launch (FSDP)")
    if shape is None:
        shape = MeshShape(dp_replicate=world, source="accelerate launch" if world > 1 else "one process")
    problem = world_problem(shape, world)
    if problem:
        raise MeshError(problem)
    return shape


def _exported_ep(
    env: Mapping[str, str], section: MeshShape | None, sizes: Mapping[str, int], label: str
) -> int:
    """ep under `accelerate launch`, which exports only its own keys: the environment's
    PARALLELISM_CONFIG_EP_SIZE when set, else the recipe's accelerate config file when its section asks for the
    mesh the launch exported (the file that was launched), else 1."""
    key = EP_SIZE_KEY.upper()
    if key in env:
        return _size(env[key], key, label)
    if section is not None and all(getattr(section, dim) == size for dim, size in sizes.items()):
        return section.ep
    return 1


def world_problem(shape: MeshShape, world: int) -> str | None:
    if shape.cp > 1:
        return f"{shape.source}: cp_size {shape.cp}: {CP_UNSUPPORTED}"
    problem = ep_problem(shape)
    if problem:
        return problem
    if shape.world != world:
        return (
            f"{shape.source}: the mesh {shape.describe()}, but the launch has {world} processes; make the sizes "
            f"multiply to the number of processes (accelerate launch --num_processes {shape.world})"
        )
    return None


# the model sizes each tensor-parallel slice divides; vocab may split unevenly (DTensor pads the last shard)
TP_DIVIDES = ("num_attention_heads", "num_key_value_heads", "hidden_size", "intermediate_size")


def model_problems(
    shape: MeshShape,
    fields: Mapping[str, Any],
    has_tp_plan: bool,
    model_type: str,
    has_ep_plan: bool = True,
) -> list[str]:
    """What keeps this model from this mesh: `key: problem` fragments (the caller adds the file label)."""
    return tensor_parallel_problems(shape, fields, has_tp_plan, model_type) + expert_problems(
        shape, fields, has_ep_plan, model_type
    )


def tensor_parallel_problems(
    shape: MeshShape, fields: Mapping[str, Any], has_tp_plan: bool, model_type: str
) -> list[str]:
    """What keeps this model's matrices from slicing over `shape.tp` ranks (none when tp is 1)."""
    if shape.tp == 1:
        return []
    if not has_tp_plan:
        return [
            f"model.model_type: {model_type} has no tensor-parallel plan in transformers (base_model_tp_plan), so "
            f"it cannot run with tp_size {shape.tp}; use FSDP (tp_size 1) or a model type with one (llama, qwen2, "
            "mistral, ...)"
        ]
    problems = []
    for key in TP_DIVIDES:
        value = fields.get(key)
        if isinstance(value, int) and value % shape.tp:
            problems.append(
                f"model.{key}: {value} is not divisible by tp_size {shape.tp} ({shape.source}); each "
                "tensor-parallel rank takes an equal slice of it: pick a tp_size that divides it"
            )
    return problems


def has_tensor_parallel_plan(model_type: str) -> bool:
    """transformers ships a tensor-parallel plan for this architecture (`base_model_tp_plan`)."""
    from transformers import AutoConfig

    try:
        return bool(getattr(AutoConfig.for_model(model_type), "base_model_tp_plan", None))
    except ValueError:  # an unknown model type: reported by the model checks
        return True


def launch_problems(
    settings: Mapping | None, where: str, model_type: str, fields: Mapping[str, Any]
) -> tuple[MeshShape | None, list[str]]:
    """(the mesh the launch config asks for, what is wrong with it: `key: problem` fragments)."""
    try:
        shape = shape_from_settings(settings, where)
    except MeshError as exc:
        return None, [str(exc)]
    processes = (settings or {}).get("num_processes")
    problems = []
    if shape.cp > 1:
        problems.append(f"{shape.source}: parallelism_config_cp_size: {CP_UNSUPPORTED}")
    elif ep_problem(shape):
        problems.append(ep_problem(shape))
    elif isinstance(processes, int) and shape.world != processes:
        problems.append(world_problem(shape, processes))
    has_plan = has_tensor_parallel_plan(model_type) if shape.tp > 1 else True
    has_ep_plan = has_expert_parallel_plan(model_type) if shape.ep > 1 else True
    problems += model_problems(shape, fields, has_plan, model_type, has_ep_plan)
    return shape, problems

"""Which device mesh a recipe trains on, and which one to propose for N GPUs (`pretrain plan --gpus N`).

The proposal tries FSDP over every GPU first, and tensor parallelism (2, 4, 8 within a node) only when FSDP
alone cannot: when a device's memory does not hold the run (activations grow with the micro batch and do not
shrink with more FSDP shards; TP slices each layer's activations and the logits), or when there are more
data-parallel ranks than the global batch has micro batches for (TP ranks share one micro batch). A TP size must
divide the heads, the KV heads, the hidden size and the MLP width. The first mesh that fits in 90% of a
device's memory is proposed, with the `parallelism_config:` lines of an accelerate config that asks for it.
"""

from __future__ import annotations

from pretrain.config import Recipe
from pretrain.config.parallelism import SIZE_KEYS, TP_DIVIDES, MeshError, MeshShape, shape_from_settings
from pretrain.scaling.memory import memory_per_device, strategy_name

FITS = 0.9  # of a device's memory: the rest for the CUDA context, fragmentation, communication buffers
TP_SIZES = (1, 2, 4, 8)


def launch_mesh(recipe: Recipe) -> MeshShape:
    """The mesh the recipe's accelerate config launches (one process without one; `validate` reports a broken
    one, so a plan of it falls back to one process)."""
    try:
        return shape_from_settings(
            recipe.accelerate_settings(), f"accelerate_config {recipe.accelerate_config}"
        )
    except MeshError:
        return MeshShape()


def propose_mesh(
    recipe: Recipe,
    config,
    params: int,
    precision: str,
    gpus: int,
    gpu_memory_gb: float,
    gpus_per_node: int = 8,
    muon_params: int = 0,
) -> dict:
    """The smallest TP (FSDP over the rest) that fits `gpus` devices; every TP size tried is listed with why not."""
    cfg = recipe.train
    windows = cfg.global_batch_tokens // cfg.seq_len
    tried = []
    for tp in TP_SIZES:
        if tp > min(gpus, gpus_per_node) or gpus % tp:
            continue
        bad = [key for key in TP_DIVIDES if getattr(config, key, None) and getattr(config, key) % tp]
        if bad:
            tried.append({"tp": tp, "fits": False, "why": f"tp {tp} does not divide {', '.join(bad)}"})
            continue
        mesh = MeshShape(dp_shard=gpus // tp, tp=tp, source="proposal")
        memory = memory_per_device(
            params,
            config.num_hidden_layers,
            config.hidden_size,
            config.vocab_size,
            cfg.seq_len,
            cfg.micro_batch_size,
            precision,
            recipe.model.gradient_checkpointing,
            mesh,
            muon_params=muon_params,
        )
        row = {"tp": tp, "mesh": mesh.sizes(), "strategy": strategy_name(mesh), "memory_per_device": memory}
        if windows % (cfg.micro_batch_size * mesh.dp):
            row.update(
                fits=False,
                why=f"{mesh.dp} data-parallel ranks x micro batch {cfg.micro_batch_size} "
                f"do not divide the global batch of {windows} sequences",
            )
        elif memory["total_gb"] >= FITS * gpu_memory_gb:
            row.update(
                fits=False, why=f"{memory['total_gb']} GiB per device > {FITS:.0%} of {gpu_memory_gb} GB"
            )
        else:
            row.update(fits=True, grad_accum=windows // (cfg.micro_batch_size * mesh.dp))
            return {"gpus": gpus, "proposed": row, "accelerate": _accelerate_lines(mesh), "tried": tried}
        tried.append(row)
    return {"gpus": gpus, "proposed": None, "accelerate": None, "tried": tried}


def _accelerate_lines(mesh: MeshShape) -> str:
    """The lines of an accelerate config file that launch `mesh` (`accelerate launch --config_file`)."""
    lines = [f"num_processes: {mesh.world}", "parallelism_config:"]
    lines += [f"  {key}: {getattr(mesh, dim)}" for dim, key in SIZE_KEYS.items()]
    return "\n".join(lines)

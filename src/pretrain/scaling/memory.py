"""Memory per device: weights, gradients, optimizer state and activations, under the launch strategy.

Bytes per parameter: `bf16-mixed`/`fp32` keep fp32 weights (4) + fp32 grads (4) + AdamW m, v (8);
`bf16-true` keeps everything in bf16 (2 + 2 + 4). DDP replicates all of it; ZeRO-2 shards grads and
optimizer state; FSDP (full shard) and ZeRO-3 shard weights too. Activations follow Korthikanti et al.
2022 (reducing activation recomputation), with a fused (flash/SDPA) attention: about 34·s·b·h bytes
per layer in 16-bit (the 5·a·s²·b term disappears), ~2·s·b·h per layer with full activation checkpointing
plus one live layer, ~16·s·b·h per layer with the selective op policy (the block input, the attention output
and every other matmul output of a Llama block: q, v, gate, down with an MLP of 8/3·h, plus one live layer),
and the logits s·b·V in bf16 plus fp32 for the loss.

Under Muon (`muon_params`: the hidden matrices it trains) those keep one state (momentum, fp32 or bf16) instead
of AdamW's two, and `DistributedMuon` holds its step's bf16 buffers until the step ends: on sharded parameters
(FSDP2) each rank's rows sent, the owned matrices received, their Newton-Schulz output and the rows returned
(4 x 2 bytes per element of this rank's share); on whole matrices the stacked updates and their output (2 x 2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Strategy:
    name: str  # ddp | fsdp (full shard) | shard_grad_op (weights replicated) | single
    world_size: int


def strategy_from_accelerate(cfg: dict | None) -> Strategy:
    if not cfg:
        return Strategy("single", 1)
    kind = str(cfg.get("distributed_type", "NO")).upper()
    n = int(cfg.get("num_processes", 1) or 1)
    if kind == "FSDP":
        shard = str((cfg.get("fsdp_config") or {}).get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        return Strategy("shard_grad_op" if "GRAD_OP" in shard else "fsdp", n)
    if kind in ("MULTI_GPU", "MULTI_CPU") or n > 1:
        return Strategy("ddp", n)
    return Strategy("single", 1)


def memory_per_device(
    params: int,
    layers: int,
    hidden: int,
    vocab: int,
    seq_len: int,
    micro_batch: int,
    precision: str,
    gradient_checkpointing: bool | str,
    strategy: Strategy,
    muon_params: int = 0,
) -> dict[str, float]:
    """GiB per device for each component and the total (`muon_params`: parameters Muon trains, else AdamW)."""
    if precision == "bf16-true":
        w, g, o = 2, 2, 4
    else:
        w, g, o = 4, 4, 8
    n = max(strategy.world_size, 1)
    shard_w = n if strategy.name == "fsdp" else 1
    shard_go = n if strategy.name in ("fsdp", "shard_grad_op") else 1
    act_layer = 34 * seq_len * micro_batch * hidden
    if gradient_checkpointing == "selective":
        activations = 16 * seq_len * micro_batch * hidden * layers + act_layer
    elif gradient_checkpointing:
        activations = 2 * seq_len * micro_batch * hidden * layers + act_layer
    else:
        activations = act_layer * layers
    logits = seq_len * micro_batch * vocab * (2 + 4)
    gib = 2**30
    parts = {
        "weights_gb": params * w / shard_w / gib,
        "grads_gb": params * g / shard_go / gib,
        "optimizer_gb": ((params - muon_params) * o + muon_params * (o // 2 + (8 if shard_go > 1 else 4)))
        / shard_go
        / gib,
        "activations_gb": (activations + logits) / gib,
    }
    parts["total_gb"] = sum(parts.values())
    return {k: round(v, 2) for k, v in parts.items()}

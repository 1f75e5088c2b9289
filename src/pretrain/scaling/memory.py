"""Memory per device: weights, gradients, optimizer state and activations, on any device mesh.

Bytes per parameter: `bf16-mixed`/`fp32` keep fp32 weights (4) + fp32 grads (4) + AdamW m, v (8);
`bf16-true` keeps everything in bf16 (2 + 2 + 4). A mesh (`config/parallelism.py`) of replicas x FSDP shards x
tensor parallel divides them by shards x TP (replicas hold a copy each: DDP divides nothing, HSDP by the shards
of one replica); FSDP also holds the gathered weights of a block being computed and of the next one it
prefetches (2 blocks, unsharded, divided by TP), or, with `reshard_after_forward: false`, every block's from the
forward to the backward. Activations follow Korthikanti et al. 2022 (reducing activation recomputation), with a
fused (flash/SDPA) attention: about 34·s·b·h bytes per layer in 16-bit (the 5·a·s²·b term disappears); tensor
parallelism without sequence parallelism (transformers' plans) leaves 10·s·b·h of it whole and slices the other
24·s·b·h; ~2·s·b·h per layer with full activation checkpointing plus one live layer, ~16·s·b·h per layer with the
selective op policy (the block input, the attention output and every other matmul output of a Llama block: q, v,
gate, down with an MLP of 8/3·h, plus one live layer). fp32 activations (fp32 precision) take twice the bytes.
The logits s·b·V (16-bit, or fp32) plus the loss's fp32 log-softmax and its gradient, sliced by TP when the loss
is computed on the vocabulary shards (loss parallel). b is the micro batch of one data-parallel rank.

Under Muon (`muon_params`: the hidden matrices it trains) those keep one state (momentum, fp32 or bf16) instead
of AdamW's two, and `DistributedMuon` holds its step's bf16 buffers until the step ends: on sharded parameters
(FSDP2) each rank's rows sent, the owned matrices received, their Newton-Schulz output and the rows returned
(4 x 2 bytes per element of this rank's share); on whole matrices the stacked updates and their output (2 x 2).
"""

from __future__ import annotations

from pretrain.config.parallelism import MeshShape


def strategy_name(mesh: MeshShape) -> str:
    """A short name for the launch: single, ddp, fsdp, hsdp, tp, fsdp+tp, hsdp+tp, ddp+tp."""
    if mesh.world == 1:
        return "single"
    data = "hsdp" if mesh.dp_shard > 1 and mesh.dp_replicate > 1 else "fsdp" if mesh.dp_shard > 1 else "ddp"
    if mesh.tp == 1:
        return data
    return "tp" if mesh.dp == 1 else f"{data}+tp"


def memory_per_device(
    params: int,
    layers: int,
    hidden: int,
    vocab: int,
    seq_len: int,
    micro_batch: int,
    precision: str,
    gradient_checkpointing: bool | str,
    mesh: MeshShape,
    muon_params: int = 0,
) -> dict[str, float]:
    """GiB per device for each component and the total (`muon_params`: parameters Muon trains, else AdamW)."""
    if precision == "bf16-true":
        w, g, o = 2, 2, 4
    else:
        w, g, o = 4, 4, 8
    act_bytes = 4 if precision == "fp32" else 2  # the Korthikanti terms below count 16-bit activations
    shards = mesh.dp_shard * mesh.tp
    weights = params * w / shards
    if mesh.dp_shard > 1:  # blocks gathered for compute: two at a time, or all of them between fwd and bwd
        gathered_blocks = 2 if mesh.reshard_after_forward else layers
        weights += min(gathered_blocks, layers) * (params / max(layers, 1)) * w / mesh.tp
    sbh = seq_len * micro_batch * hidden * act_bytes / 2
    act_layer = (10 + 24 / mesh.tp) * sbh
    if gradient_checkpointing == "selective":
        activations = 16 * sbh * layers + act_layer
    elif gradient_checkpointing:
        activations = 2 * sbh * layers + act_layer
    else:
        activations = act_layer * layers
    logits = seq_len * micro_batch * vocab * (act_bytes + 4 + 4) / mesh.tp
    gib = 2**30
    parts = {
        "weights_gb": weights / gib,
        "grads_gb": params * g / shards / gib,
        "optimizer_gb": (
            (params - muon_params) * o + muon_params * (o // 2 + (8 if mesh.dp_shard > 1 else 4))
        )
        / shards
        / gib,
        "activations_gb": (activations + logits) / gib,
    }
    parts["total_gb"] = sum(parts.values())
    return {k: round(v, 3) for k, v in parts.items()}

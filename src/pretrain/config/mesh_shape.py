"""The sizes of a device mesh (`MeshShape`) and the error a mesh that cannot be built raises; where the sizes come
from and what they must satisfy is `config/parallelism.py` (and `config/expert_checks.py` for the experts)."""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.core.errors import PretrainError

SIZE_KEYS = {  # mesh dimension -> accelerate's config key (the env variable is its upper-case form)
    "dp_replicate": "parallelism_config_dp_replicate_size",
    "dp_shard": "parallelism_config_dp_shard_size",
    "tp": "parallelism_config_tp_size",
    "cp": "parallelism_config_cp_size",
}


class MeshError(PretrainError):
    """A mesh that cannot be built for this launch or this model; the message names the sizes and the fix."""


@dataclass(frozen=True)
class MeshShape:
    dp_replicate: int = 1  # data-parallel replicas (DDP; across the shard groups of HSDP)
    dp_shard: int = 1  # FSDP2 shards of weights, gradients and optimizer state
    tp: int = 1  # tensor-parallel ranks: each holds a slice of every matrix of a layer
    cp: int = 1  # context parallel (refused, see CP_UNSUPPORTED)
    # expert-parallel ranks: each holds num_experts / ep of every MoE layer's experts; not a dimension of its own
    # but a split of dp_shard (it must divide it; `world` does not count it), tokens sent to experts by all-to-all
    ep: int = 1
    reshard_after_forward: bool = True  # FSDP: free the gathered weights after the forward (ZeRO-3)
    source: str = "one process"  # where the sizes came from, for messages

    @property
    def world(self) -> int:
        return self.dp_replicate * self.dp_shard * self.tp * self.cp

    @property
    def dp(self) -> int:
        """Data-parallel ranks: each reads its own slice of every global batch (TP peers read the same)."""
        return self.dp_replicate * self.dp_shard

    @property
    def sharded(self) -> bool:
        """No rank holds whole weight matrices (FSDP shards or TP slices)."""
        return self.dp_shard > 1 or self.tp > 1

    @property
    def expert_shard(self) -> int:
        """Copies of each expert split within a replica (transformers' `efsdp`): dp_shard / ep."""
        return self.dp_shard // self.ep

    @property
    def expert_copies(self) -> int:
        """Ranks holding the same expert split, which FSDP2 shards it over: its copies in every replica."""
        return self.dp_replicate * self.expert_shard

    def sizes(self) -> dict[str, int]:
        """The mesh's sizes by dimension (what a checkpoint records of the run that wrote it; ep, which splits
        dp_shard and leaves the data layout as it is, is recorded only when it is used)."""
        sizes = {dim: getattr(self, dim) for dim in SIZE_KEYS}
        return {**sizes, "ep": self.ep} if self.ep > 1 else sizes

    def describe(self) -> str:
        parts = [f"{name} {getattr(self, name)}" for name in ("dp_replicate", "dp_shard", "tp", "cp")]
        experts = f" (experts over ep {self.ep})" if self.ep > 1 else ""
        return " x ".join(parts) + f" = {self.world} processes" + experts

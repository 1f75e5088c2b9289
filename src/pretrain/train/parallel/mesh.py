"""The device mesh of a run: data-parallel replicas x FSDP shards x tensor parallel, built with torch.

The sizes are decided before any process group exists (`config/parallelism.py`: accelerate's
`parallelism_config`, an FSDP launch, or replicas); `build_parallelism` turns them into torch `DeviceMesh`es
over the launch's default process group (gloo on CPU ranks, NCCL on GPUs). A lone process gets no mesh at all:
the model stays a plain module and every function of this package becomes the local call.

    world mesh  (dp_replicate, dp_shard, tp)
    dp          the flattened (dp_replicate, dp_shard): a rank's data coordinate, the loss average
    fsdp        dp_shard, or (dp_replicate, dp_shard) for HSDP and for plain replicas (shard size 1)
    tp          the ranks that hold slices of the same matrices and read the same batch

With expert parallelism (`ep` > 1, tp 1) a second mesh views the same ranks the experts' way, as transformers'
`TransformersDeviceMesh` and torchtitan do:

    expert mesh (dp_replicate, efsdp, ep), efsdp = dp_shard / ep
    ep            consecutive dp_shard ranks that split every MoE layer's experts and exchange tokens (all-to-all)
    expert_fsdp   efsdp, or (dp_replicate, efsdp) flattened with replicas: the ranks holding the same experts,
                  over which FSDP2 shards them (size 1 when ep == dp_shard without replicas: each expert lives
                  on exactly one rank)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain.config.parallelism import MeshShape

DIMS = ("dp_replicate", "dp_shard", "tp")
EXPERT_DIMS = ("dp_replicate", "efsdp", "ep")


@dataclass
class Parallelism:
    """The mesh a run trains on, and this rank's place in it (all None / 0 / 1 on one process)."""

    shape: MeshShape
    world: object | None = None  # DeviceMesh over (dp_replicate, dp_shard, tp)
    dp: object | None = None  # flattened data-parallel mesh
    fsdp: object | None = None  # what FSDP2 shards (and replicates) over
    tp: object | None = None  # tensor-parallel mesh
    loss_parallel: bool = False  # the LM head's logits stay vocab-sharded into the cross-entropy
    ep: object | None = None  # expert-parallel mesh (None without expert parallelism)
    expert_fsdp: object | None = None  # what FSDP2 shards the experts over (the copies of one expert split)

    @property
    def expert_parallel(self) -> bool:
        return self.ep is not None and self.shape.ep > 1

    @property
    def data_rank(self) -> int:
        """This rank's slice of each global batch (tensor-parallel peers share one)."""
        return self.dp.get_local_rank() if self.dp is not None else 0

    @property
    def data_world(self) -> int:
        """Data-parallel ranks: the global batch is split this many ways."""
        return self.shape.dp

    @property
    def data_group(self):
        """The process group of this rank's data-parallel peers (None on one process: the default group)."""
        return self.dp.get_group() if self.dp is not None else None

    @property
    def sharded(self) -> bool:
        """No rank holds whole weight matrices: FSDP shards or tensor-parallel slices."""
        return self.shape.sharded

    @property
    def tensor_parallel(self) -> bool:
        return self.tp is not None and self.shape.tp > 1

    @property
    def data_parallel(self) -> bool:
        return self.fsdp is not None and self.shape.dp > 1


def build_parallelism(shape: MeshShape, device_type: str) -> Parallelism:
    """The meshes for `shape` over the default process group (which the launch started); none on one process."""
    if shape.world == 1:
        return Parallelism(shape)
    from torch.distributed.device_mesh import init_device_mesh

    world = init_device_mesh(device_type, (shape.dp_replicate, shape.dp_shard, shape.tp), mesh_dim_names=DIMS)
    data = world[("dp_replicate", "dp_shard")]
    # keep the flattened mesh itself: slicing "dp" back out of the root is deprecated
    dp = data._flatten("dp")
    fsdp = data if shape.dp_replicate > 1 else world["dp_shard"]  # 2-D: HSDP (replicas of shard groups)
    par = Parallelism(shape, world=world, dp=dp, fsdp=fsdp, tp=world["tp"])
    if shape.ep > 1:
        # the same ranks, dp_shard split as (efsdp, ep): rank r * dp_shard + e * ep + k is copy e of split k
        experts = init_device_mesh(
            device_type, (shape.dp_replicate, shape.expert_shard, shape.ep), mesh_dim_names=EXPERT_DIMS
        )
        par.ep = experts["ep"]
        # with replicas, every copy of an expert split (dp_replicate x efsdp ranks) shards it, on one flattened
        # dimension: FSDP2's HSDP over a shard dimension of 1 divides the gradient twice (torch 2.13: the
        # single-rank "reduce-scatter" applies the divide factor, the post-all-reduce divide applies it again)
        if shape.dp_replicate > 1:
            par.expert_fsdp = experts[("dp_replicate", "efsdp")]._flatten("expert_copies")
        else:
            par.expert_fsdp = experts["efsdp"]
    return par


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"

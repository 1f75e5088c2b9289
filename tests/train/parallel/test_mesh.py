"""One process has no mesh: the data coordinates are (0, 1) and nothing is sharded. (Meshes over several ranks
are exercised by tests/train/test_mesh_training.py through `pretrain train`.)"""

from __future__ import annotations

from pretrain.config.parallelism import MeshShape
from pretrain.train.parallel.mesh import build_parallelism


def test_one_process_builds_no_mesh():
    par = build_parallelism(MeshShape(), "cpu")
    assert (par.world, par.dp, par.fsdp, par.tp) == (None, None, None, None)
    assert (par.data_rank, par.data_world, par.data_group) == (0, 1, None)
    assert not (par.sharded or par.tensor_parallel or par.data_parallel)


def test_the_shape_decides_what_is_sharded():
    assert MeshShape(dp_replicate=4).dp == 4 and not MeshShape(dp_replicate=4).sharded
    assert MeshShape(dp_shard=2).sharded and MeshShape(tp=2).sharded
    assert MeshShape(dp_replicate=2, dp_shard=2, tp=2).dp == 4

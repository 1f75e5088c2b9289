"""A process group of one rank (gloo) in the test process: DTensors on several meshes without launching ranks."""

from __future__ import annotations

import pytest


@pytest.fixture()
def one_rank_group(tmp_path):
    import torch.distributed as dist

    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture()
def two_meshes(one_rank_group):
    """A 1-D and a 2-D device mesh of this one rank: DTensors on them are laid out differently."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", (1,), mesh_dim_names=("a",)), init_device_mesh(
        "cpu", (1, 1), mesh_dim_names=("b", "c")
    )

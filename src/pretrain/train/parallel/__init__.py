"""N-D parallel training from torch's composable APIs: one code path for 1 process, DDP, FSDP2, TP, HSDP and EP.

mesh.py         the device mesh (replicas x FSDP shards x tensor parallel; the experts' view) and each rank's data
                coordinates
parallelize.py  tensor / expert parallel from the model's own plans, torch.compile per block, FSDP2 / replicas,
                loss parallel
clip.py         the global gradient norm over parameters on different meshes
state_io.py     checkpoint I/O with torch.distributed.checkpoint: each rank writes and reads only its shard
async_save.py   the background checkpoint writer (at most one save in flight)
"""

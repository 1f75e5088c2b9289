"""One rank of the FSDP resharding test; run by tests/train/test_elastic_resume.py under torchrun (gloo, CPU).

    fsdp_reshard_worker.py OUT train FOLDER     train 3 steps, save a sharded checkpoint to FOLDER and the full
                                                state (weights + optimizer, gathered) to OUT/reference.pt
    fsdp_reshard_worker.py OUT load FOLDER [SAVE_TO]
                                                load FOLDER into a freshly sharded model on this world size, write
                                                OUT/loaded-<world>.pt (the gathered full state) and optionally
                                                save it again, sharded on this world size, to SAVE_TO

The save/load functions are the ones the training loop calls under FSDP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from pretrain.train import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).parent))
from fsdp_checkpoint_worker import build, byte_tokenizer, train_step  # noqa: E402


def full_state(model, optimizer) -> dict:
    """Weights and optimizer state as full (unsharded) tensors, the same whatever the world size."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return {
        "model": ckpt.full_weights(model, sharded=True),
        "optimizer": get_optimizer_state_dict(model, optimizer, options=options),
    }


def save(folder: Path, model, optimizer) -> None:
    rank = dist.get_rank()
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    weights = ckpt.full_weights(model, sharded=True)
    ckpt.save_optimizer(folder, model, optimizer, sharded=True, is_main=rank == 0)
    if rank == 0:
        ckpt.save_model_folder(folder, model, byte_tokenizer(), weights)
        ckpt.write_main_state(folder, {"step": 3, "world_size": dist.get_world_size()}, "recipe: test\n")
    dist.barrier()


def main(out: Path, mode: str, folder: Path, save_to: Path | None) -> None:
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    if mode == "train":
        model, opt = build(seed=0)
        for i in range(3):
            train_step(model, opt, i)
        save(folder, model, opt)
        state = full_state(model, opt)
    else:
        model, opt = build(seed=1)  # another init: everything must come from the checkpoint
        ckpt.load_main_state(folder, model, opt, sharded=True)
        state = full_state(model, opt)
        if save_to is not None:
            save(save_to, model, opt)
    if dist.get_rank() == 0:
        torch.save(state, out / ("reference.pt" if mode == "train" else f"loaded-{world}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)

"""A rank of tests/train/test_muon.py's checkpoint test, under torchrun (gloo, CPU): MuonAdamW on an FSDP2 model,
3 steps, the optimizer saved through the checkpoint code's DCP path (train/parallel/state_io.py), loaded into a fresh copy, then 2 more steps
of each: the same weights.

    muon_checkpoint_worker.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import AutoConfig, AutoModelForCausalLM

from pretrain.config.optimizer import OptimizerConfig
from pretrain.train import checkpoint as ckpt
from pretrain.train.optim import build_optimizer
from pretrain.train.parallel import state_io


def checkpoint(folder: Path) -> None:
    def build():
        torch.manual_seed(0)
        config = AutoConfig.for_model(
            "llama",
            hidden_size=48,
            intermediate_size=101,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=64,
        )
        model = AutoModelForCausalLM.from_config(config)
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model, build_optimizer(model, OptimizerConfig(name="muon"), "cpu")

    def step(model, optimizer, i):
        data = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(100 + i))
        model(input_ids=data[:, :-1], labels=data[:, 1:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model, optimizer = build()
    for i in range(3):
        step(model, optimizer, i)
    state_io.write_optimizer(ckpt.optimizer_path(folder), state_io.optimizer_state(model, optimizer))
    dist.barrier()
    fresh, fresh_opt = build()
    fresh.load_state_dict(model.state_dict())
    state_io.read_optimizer(ckpt.optimizer_path(folder), fresh, fresh_opt)
    for i in range(3, 5):
        step(model, optimizer, i)
        step(fresh, fresh_opt, i)
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a.full_tensor(), b.full_tensor()), name


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        checkpoint(Path(sys.argv[1]))
    finally:
        dist.destroy_process_group()

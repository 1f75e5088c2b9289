"""One rank of the sharded-checkpoint tests; run under torchrun (gloo, CPU) by tests/train/test_checkpoint_io.py.

    mesh_checkpoint_worker.py OUT train R S T FOLDER
        on the mesh R x S x T (dp_replicate x dp_shard x tp; 1 x 1 x 1 = one process, no mesh): train 3 steps,
        save a checkpoint to FOLDER with the functions the loop calls, train 3 more; OUT/reference.pt holds the
        gathered weights + optimizer at the save, OUT/uninterrupted.json the losses of steps 4-6
    mesh_checkpoint_worker.py OUT load R S T FOLDER [SAVE_TO]
        a model of another init on this mesh loads FOLDER; OUT/loaded-RxSxT.pt holds what it loaded (gathered),
        OUT/resumed-RxSxT.json its losses of steps 4-6; with SAVE_TO it saves again there (on this mesh)

Every rank builds the same model (same seed) before the mesh cuts it; the global batch of a step is the same on
every mesh, split over the data-parallel ranks, so the losses agree across meshes to reduction order.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from pretrain.config.optimizer import OptimizerConfig
from pretrain.config.parallelism import MeshShape
from pretrain.train import checkpoint as ckpt
from pretrain.train.optim import build_optimizer
from pretrain.train.parallel import state_io
from pretrain.train.parallel.clip import clip_grad_norm_
from pretrain.train.parallel.mesh import build_parallelism
from pretrain.train.parallel.parallelize import local_value, loss_context, parallelize
from pretrain.train.step import causal_lm_loss

VOCAB, SEQ, GLOBAL_BATCH = 250, 16, 4  # vocab 250: tensor parallel splits it unevenly


def byte_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build(seed: int, sizes: tuple[int, int, int]):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config)
    shape = MeshShape(*sizes)
    par = build_parallelism(shape, "cpu")
    par.loss_parallel = par.tensor_parallel
    parallelize(model, par)
    return model, build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-2), "cpu"), par


def train_step(model, optimizer, par, step: int) -> float:
    g = torch.Generator().manual_seed(1000 + step)
    rows = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ + 1), generator=g)
    per = GLOBAL_BATCH // par.data_world
    rows = rows[par.data_rank * per : (par.data_rank + 1) * per]
    batch = {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}
    with loss_context(par):
        loss = causal_lm_loss(model, batch)
        loss.backward()
    clip_grad_norm_(model.parameters(), 0.5)
    optimizer.step()
    optimizer.zero_grad()
    total = local_value(loss.detach()).clone()
    if dist.is_initialized():
        dist.all_reduce(total)  # tensor-parallel peers hold the same value: the mean over the world is theirs
        total /= dist.get_world_size()
    return total.item()


def gathered(model, optimizer) -> dict:
    """Weights and optimizer state as whole tensors keyed by name: the same on every mesh."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, flatten_optimizer_state_dict=True)
    state = {
        "model": get_model_state_dict(model, options=options),
        "optimizer": get_optimizer_state_dict(model, optimizer, options=options),
    }
    return copy.deepcopy(state)  # on one process these are the live tensors, which training goes on changing


def save(folder: Path, model, optimizer, par) -> None:
    """A checkpoint as the loop writes one (synchronously here): rank files, main files, shards, seal."""
    main = not dist.is_initialized() or dist.get_rank() == 0
    if main:
        folder.mkdir(parents=True, exist_ok=True)
    if dist.is_initialized():
        dist.barrier()
    ckpt.write_rank_state(folder, dist.get_rank() if dist.is_initialized() else 0, {"position": 0})
    if main:
        ckpt.save_model_files(folder, model, byte_tokenizer())
        world = dist.get_world_size() if dist.is_initialized() else 1
        ckpt.write_main_state(folder, {"step": 3, "world_size": world, "mesh": par.shape.sizes()}, "x: 1\n")
    state_io.write_weights(folder, state_io.model_state(model), ckpt.WEIGHTS, None, main)
    state_io.write_optimizer(ckpt.optimizer_path(folder), state_io.optimizer_state(model, optimizer))
    if main:
        ckpt.seal_checkpoint(folder)


def main(out: Path, mode: str, sizes: tuple[int, int, int], folder: Path, save_to: Path | None) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    tag = "x".join(map(str, sizes))
    if mode == "train":
        model, optimizer, par = build(0, sizes)
        for step in range(3):
            train_step(model, optimizer, par, step)
        save(folder, model, optimizer, par)
        reference = gathered(model, optimizer)
        probe = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            logits = model(input_ids=probe).logits  # every rank: a collective; whole logits outside the loss
        if rank == 0:  # the consolidated folder, loaded as anyone would, against the live sharded model
            hf = AutoModelForCausalLM.from_pretrained(folder).eval()
            with torch.no_grad():
                diff = (hf(input_ids=probe).logits - logits).abs().max().item()
            (out / "logits.json").write_text(
                json.dumps({"max_abs_diff": diff, "scale": logits.abs().max().item()})
            )
        losses = [train_step(model, optimizer, par, step) for step in range(3, 6)]
        if rank == 0:
            torch.save(reference, out / "reference.pt")
            (out / "uninterrupted.json").write_text(json.dumps(losses))
    else:
        model, optimizer, par = build(1, sizes)  # another init: everything must come from the checkpoint
        ckpt.load_main_state(folder, model, optimizer, par.sharded)
        loaded = gathered(model, optimizer)
        if save_to is not None:
            save(save_to, model, optimizer, par)
        losses = [train_step(model, optimizer, par, step) for step in range(3, 6)]
        if rank == 0:
            torch.save(loaded, out / f"loaded-{tag}.pt")
            (out / f"resumed-{tag}.json").write_text(json.dumps(losses))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sizes = tuple(int(x) for x in sys.argv[3:6])
    main(
        Path(sys.argv[1]),
        sys.argv[2],
        sizes,
        Path(sys.argv[6]),
        Path(sys.argv[7]) if len(sys.argv) > 7 else None,
    )

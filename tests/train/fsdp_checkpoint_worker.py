"""One rank of the FSDP tests; run by tests/train/test_fsdp_checkpoint.py under torchrun (gloo, CPU).

The model is sharded with FSDP2's `fully_shard` — what accelerate's FSDP2 plugin applies — then saved and
loaded with the functions the training loop calls under FSDP, and evaluated by the in-loop evaluator in
its collective (every rank) mode. Writes `result-<rank>.json` to argv[1].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from pretrain.core.layout import RunLayout
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.train import checkpoint as ckpt

VOCAB = 320


class TorchDistAccelerator:
    """The three accelerator members the evaluator uses, over the torchrun process group."""

    is_main_process = property(lambda self: dist.get_rank() == 0)
    num_processes = property(lambda self: dist.get_world_size())

    def wait_for_everyone(self) -> None:
        dist.barrier()


def byte_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def eval_recipe(out: Path) -> SimpleNamespace:
    return SimpleNamespace(
        out=out,
        layout=RunLayout(out),
        seed=0,
        eval=SimpleNamespace(tasks=["stdlib_cloze"], local_tasks=[], limit=12, batch_size=4, num_fewshot=0),
        train=SimpleNamespace(seq_len=128),
    )


def build(seed: int):
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
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def train_step(model, optimizer, i: int) -> float:
    g = torch.Generator().manual_seed(1000 + 10 * i + dist.get_rank())
    x = torch.randint(0, VOCAB, (2, 16), generator=g)
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    total = loss.detach().clone()
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tok = byte_tokenizer()
    folder = out / "step-0000003"
    model, opt = build(seed=0)
    for i in range(3):
        train_step(model, opt, i)
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    weights = ckpt.full_weights(model, sharded=True)
    ckpt.save_optimizer(folder, model, opt, sharded=True, is_main=rank == 0)
    if rank == 0:
        ckpt.save_model_folder(folder, model, tok, weights)
        ckpt.write_main_state(folder, {"step": 3}, "recipe: test\n")
    dist.barrier()
    uninterrupted = [train_step(model, opt, i) for i in range(3, 6)]

    resumed_model, resumed_opt = build(seed=1)  # a different init: everything must come from the checkpoint
    state = ckpt.load_main_state(folder, resumed_model, resumed_opt, sharded=True)
    loaded = ckpt.full_weights(resumed_model, sharded=True)
    resumed = [train_step(resumed_model, resumed_opt, i) for i in range(3, 6)]

    # in-loop evaluation of the sharded model: every rank runs the same requests, rank 0 writes the record
    sharded_eval = LoopEvaluator(eval_recipe(out), tok, TorchDistAccelerator(), collective=True)
    metrics = sharded_eval(resumed_model, step=6, tokens_seen=0)
    full = ckpt.full_weights(resumed_model, sharded=True)

    result = {"step": state["step"], "uninterrupted": uninterrupted, "resumed": resumed, "eval": metrics}
    if rank == 0:
        hf = AutoModelForCausalLM.from_pretrained(folder)
        result["hf_matches_gathered"] = all(
            torch.equal(hf.state_dict()[k], v) for k, v in loaded.items() if k in hf.state_dict()
        )
        result["gathered_keys"] = len(loaded)
        hf.load_state_dict(full, strict=False)  # the same weights, unsharded, evaluated by rank 0 alone
        single = LoopEvaluator(eval_recipe(out / "single"), tok)
        result["unsharded_eval"] = single(hf, step=6, tokens_seen=0)
    (out / f"result-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

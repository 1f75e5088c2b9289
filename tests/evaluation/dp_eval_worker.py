"""One rank of tests/evaluation/test_data_parallel.py, under torchrun (gloo, CPU): the in-loop evaluator of a
run of 2 ranks splits the documents over them; rank 0 also evaluates an unsharded copy alone.

    dp_eval_worker.py OUT replicated|fsdp     writes OUT/result-<rank>.json
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from pretrain.config.parallelism import MeshShape
from pretrain.core.layout import RunLayout
from pretrain.evaluation.data_parallel import DataParallelEval
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.train.parallel.mesh import build_parallelism
from pretrain.train.parallel.parallelize import parallelize


class TorchDistAccelerator:
    """The accelerator members the evaluator uses, over the torchrun process group."""

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


def eval_recipe(out: Path, limit: int) -> SimpleNamespace:
    return SimpleNamespace(
        out=out,
        layout=RunLayout(out),
        seed=0,
        eval=SimpleNamespace(
            tasks=["stdlib_cloze"], local_tasks=[], limit=limit, batch_size=4, num_fewshot=0, rc_bpb=False
        ),
        train=SimpleNamespace(seq_len=128),
    )


def build(seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def count_forwards(model) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


def main(out: Path, mode: str, limit: int = 13) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))  # a forward out of step fails, not hangs
    rank = dist.get_rank()
    tok = byte_tokenizer()
    model = build()
    sharded = mode == "fsdp"
    if sharded:
        parallelize(model, build_parallelism(MeshShape(dp_shard=2), "cpu"))
    model.eval()
    calls = count_forwards(model)
    data = DataParallelEval(rank, dist.get_world_size(), None, lockstep=sharded)
    evaluator = LoopEvaluator(eval_recipe(out, limit), tok, TorchDistAccelerator(), data)
    evaluator.prepare()
    metrics = evaluator(model, step=6, tokens_seen=0)
    result = {"eval": metrics, "forwards": calls[0], "seconds": evaluator.seconds}

    if sharded:  # the protocol itself: 3 forwards on rank 0, 1 on rank 1, and both end with as many
        lm = evaluator._live.language_model(model, tok)
        before = calls[0]
        for _ in range(3 if rank == 0 else 1):
            lm.before_forward()
            with torch.no_grad():
                model(torch.zeros((1, 2), dtype=torch.long), use_cache=False)
        lm._until_no_forward_is_left()
        result["lockstep_forwards"] = calls[0] - before

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:  # the same weights, unsharded, evaluated by one process alone
        single_model = build(seed=1)
        single_model.load_state_dict(full)
        single_calls = count_forwards(single_model)
        single = LoopEvaluator(eval_recipe(out / "single", limit), tok)
        result["single"] = single(single_model.eval(), step=6, tokens_seen=0)
        result["single_seconds"], result["single_forwards"] = single.seconds, single_calls[0]
    (out / f"result-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], *(int(a) for a in sys.argv[3:]))

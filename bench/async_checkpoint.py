"""Sharded async checkpoints vs today's gather: rank 0's extra peak RSS during a save, and the step time while
a save is written in the background vs a synchronous save.

    python bench/async_checkpoint.py              # 4 CPU ranks (gloo), FSDP 4, a ~52M-parameter Llama
    python bench/async_checkpoint.py --quick      # ~7M parameters, for CI's smoke test

Runs itself under torchrun, each save mode in fresh processes (memory one save frees would hide the next one's
peak). Each rank trains a few AdamW steps (so the optimizer state exists), saves once to warm up (the first save
of a run pays one-time imports and buffers), gives freed memory back (malloc_trim), then saves again, measured:
  * `sharded_async`: the loop's `Checkpointer.save` (train.checkpoint.async_save: true): each rank stages a CPU
    copy of its weight and optimizer shards, the background writer writes them, rank 0 consolidates
    `model.safetensors` tensor by tensor; training steps on meanwhile;
  * `sharded_sync`: the same with `async_save: false` (the step waits for the write);
  * `gather`: what checkpoints did before, the weights gathered whole to rank 0
    (`get_model_state_dict(full_state_dict=True, cpu_offload=True)`) and written by `save_pretrained`, the
    optimizer saved per rank with DCP.
Rank 0's RSS is sampled every 2 ms by a thread; extra peak = peak during the save - RSS just before it (for the
async save, which steps on while it writes, minus the extra peak of a plain step measured the same way). The full
model + optimizer state is 12 bytes per parameter (fp32 weights, AdamW's two moments). Step times: median of
plain steps; the steps taken while the async write is in flight (plus the save call itself, which stages);
the step that includes a synchronous save.
Last stdout line: {"bench": "async_checkpoint", "params", "ranks", "full_model_and_optimizer_mb",
"extra_peak_rss_mb": {"sharded_async", "sharded_sync", "gather"}, "async_extra_fraction", "step_s": {"plain",
"during_async_save", "async_save_call", "with_sync_save"}, "async_write_s"}.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast  # noqa: E402

from pretrain.config.optimizer import OptimizerConfig  # noqa: E402
from pretrain.config.parallelism import MeshShape  # noqa: E402
from pretrain.config.stability import StabilityConfig  # noqa: E402
from pretrain.config.train import CheckpointConfig  # noqa: E402
from pretrain.core.layout import RunLayout  # noqa: E402
from pretrain.train.checkpointer import Checkpointer  # noqa: E402
from pretrain.train.optim import build_optimizer  # noqa: E402
from pretrain.train.parallel.mesh import build_parallelism  # noqa: E402
from pretrain.train.parallel.parallelize import parallelize  # noqa: E402
from pretrain.train.stability import SpikeGuard  # noqa: E402
from pretrain.train.state import TrainState  # noqa: E402

SHAPES = {  # hidden, layers, heads, intermediate, vocab
    "full": (512, 12, 8, 1536, 32000),
    "quick": (256, 4, 4, 768, 8192),
}
SEQ, MICRO = 128, 2


class RssPeak:
    """The peak of this process's resident set while the block runs, sampled by a thread."""

    def __enter__(self) -> RssPeak:
        self.before = rss_mb()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())

    @property
    def extra(self) -> float:
        return self.peak - self.before


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


class TorchDistAccelerator:
    """The accelerator members the checkpointer uses, over the torchrun process group."""

    is_main_process = property(lambda self: dist.get_rank() == 0)
    num_processes = property(lambda self: dist.get_world_size())
    process_index = property(lambda self: dist.get_rank())

    def wait_for_everyone(self) -> None:
        dist.barrier()

    def gather_for_metrics(self, values: list) -> list:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, values[0])
        return out


def build(shape_name: str):
    hidden, layers, heads, inter, vocab = SHAPES[shape_name]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        tie_word_embeddings=True,
        max_position_embeddings=SEQ,
    )
    model = AutoModelForCausalLM.from_config(config)
    par = build_parallelism(MeshShape(dp_shard=dist.get_world_size()), "cpu")
    parallelize(model, par)
    return model, build_optimizer(model, OptimizerConfig(name="adamw"), "cpu"), par, vocab


def step(model, optimizer, vocab: int) -> float:
    start = time.perf_counter()
    x = torch.randint(0, vocab, (MICRO, SEQ))
    model(input_ids=x, labels=x, use_cache=False).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def checkpointer(out: Path, model, optimizer, par, async_save: bool) -> Checkpointer:
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0}, unk_token="a")))
    train = SimpleNamespace(
        checkpoint=CheckpointConfig(async_save=async_save, keep_last=1), collective_timeout_s=600
    )
    recipe = SimpleNamespace(layout=RunLayout(out), train=train, values_as_run=lambda: {"bench": True})
    setup = SimpleNamespace(
        recipe=recipe,
        accelerator=TorchDistAccelerator(),
        model=model,
        optimizer=optimizer,
        tokenizer=tokenizer,
        parallelism=par,
        train_iter=SimpleNamespace(state_dict=lambda: {"position": 0}),
        total_steps=100,
    )
    return Checkpointer(setup)


def gather_save(folder: Path, model, optimizer) -> None:
    """The checkpoint writer before this bench's change: full weights to rank 0, save_pretrained there."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    dcp.save(
        {"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(folder / "optimizer")
    )
    if dist.get_rank() == 0:
        model.save_pretrained(folder, state_dict=weights, safe_serialization=True)
    del weights
    dist.barrier()


def trim() -> None:
    """Return freed memory to the kernel, so what a save needs shows as RSS growth (not as reused pages)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def any_rank_writing(ckpt) -> bool:
    """Whether any rank's background write is still running (every rank calls it, then steps or stops)."""
    flag = torch.tensor(int(ckpt.writer.busy))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def save_once(mode: str, ckpt, folder: Path, model, optimizer, vocab: int, step_number: int) -> dict:
    """One save of `mode` while rank 0's RSS is sampled: {"extra", and the step timings of the mode}."""
    result = {}
    state = TrainState(SpikeGuard(StabilityConfig()))
    state.step = step_number
    if mode == "gather":
        if dist.get_rank() == 0:
            folder.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        with RssPeak() as peak:
            gather_save(folder, model, optimizer)
    else:  # async: the save call stages and returns, steps go on while the write is in flight; sync: it waits
        dist.barrier()
        with RssPeak() as peak:
            start = time.perf_counter()
            ckpt.save(state)
            result["call"] = time.perf_counter() - start
            if mode == "sharded_async":
                result["during"] = []
                while any_rank_writing(ckpt):  # the ranks step together (FSDP's collectives)
                    result["during"].append(step(model, optimizer, vocab))
                ckpt.finish()
                result["write"] = time.perf_counter() - start
    result["extra"] = peak.extra
    if (
        mode == "sharded_async"
    ):  # the steps taken meanwhile have activations of their own: count the save's part
        trim()
        dist.barrier()
        with RssPeak() as plain_step:
            step(model, optimizer, vocab)
        result["extra"] -= plain_step.extra
    if mode == "sharded_sync":  # the step that waited for the save (outside the memory window: no overlap)
        result["with_sync"] = result["call"] + step(model, optimizer, vocab)
    return result


def worker(shape_name: str, mode: str, out: Path) -> None:
    """One save mode in fresh processes: build, train 4 steps (the optimizer state exists), save once to warm
    up (a run's first save pays one-time imports and buffers), then the measured save."""
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    model, optimizer, par, vocab = build(shape_name)
    n_params = sum(p.numel() for p in model.parameters())
    plain = [step(model, optimizer, vocab) for _ in range(4)][1:]
    # one checkpointer per run, as in the loop (its writer's gloo group connects on its first save)
    ckpt = (
        None if mode == "gather" else checkpointer(out / mode, model, optimizer, par, mode == "sharded_async")
    )
    trim()  # the whole model was built on each rank before sharding
    save_once(mode, ckpt, out / mode / "warm-up", model, optimizer, vocab, 5)
    trim()
    result = save_once(mode, ckpt, out / mode / "measured", model, optimizer, vocab, 10)
    if ckpt is not None:
        ckpt.close()
    result.update(params=n_params, ranks=dist.get_world_size(), plain=statistics.median(plain))
    if dist.get_rank() == 0:
        (out / f"{mode}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def summarise(results: dict[str, dict]) -> dict:
    first = results["sharded_async"]
    n_params = first["params"]
    during = first["during"]
    summary = {
        "bench": "async_checkpoint",
        "params": n_params,
        "ranks": first["ranks"],
        "full_model_and_optimizer_mb": round(n_params * 12 / 2**20, 1),
        "extra_peak_rss_mb": {mode: round(r["extra"], 1) for mode, r in results.items()},
        "step_s": {
            "plain": round(statistics.median(r["plain"] for r in results.values()), 4),
            "during_async_save": round(statistics.median(during), 4) if during else None,
            "async_save_call": round(first["call"], 4),
            "with_sync_save": round(results["sharded_sync"]["with_sync"], 4),
        },
        "async_write_s": round(first["write"], 3),
        "steps_during_async_save": len(during),
    }
    summary["async_extra_fraction"] = round(
        summary["extra_peak_rss_mb"]["sharded_async"] / summary["full_model_and_optimizer_mb"], 3
    )
    return summary


MODES = ("sharded_async", "sharded_sync", "gather")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a ~7M-parameter model (CI smoke test)")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--worker", nargs=3, metavar=("SHAPE", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], Path(args.worker[2]))
        return
    shape = "quick" if args.quick else "full"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        for mode in MODES:  # each in fresh processes: RSS freed by one save would hide the next one's peak
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks)]
            cmd += [__file__, "--worker", shape, mode, tmp]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"the ranks failed ({mode}):\n{proc.stderr[-4000:]}")
            results[mode] = json.loads((Path(tmp) / f"{mode}.json").read_text())
    summary = summarise(results)
    extra, steps = summary["extra_peak_rss_mb"], summary["step_s"]
    print(
        f"{summary['params']:,} params on {summary['ranks']} ranks (FSDP): full model + AdamW state "
        f"{summary['full_model_and_optimizer_mb']} MB; rank 0's extra peak RSS during a save: sharded async "
        f"{extra['sharded_async']} MB ({summary['async_extra_fraction']:.0%} of it), sharded sync "
        f"{extra['sharded_sync']} MB, gathered to rank 0 {extra['gather']} MB"
    )
    print(
        f"step time: plain {steps['plain']} s; while the async save is written {steps['during_async_save']} s "
        f"({summary['steps_during_async_save']} steps, the save call itself {steps['async_save_call']} s, the "
        f"write {summary['async_write_s']} s); with a synchronous save {steps['with_sync_save']} s"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

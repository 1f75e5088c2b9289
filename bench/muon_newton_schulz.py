"""Muon's Newton-Schulz stacked per shape vs per matrix, and the 2-rank FSDP2 step of DistributedMuon vs AdamW.

    python bench/muon_newton_schulz.py [--quick] [--iters 30] [--threads 1]

1. One process, the tiny recipe's 28 hidden matrices (16 x 128x128, 8 x 384x128, 4 x 128x384): Newton-Schulz per
   matrix (torch.optim.Muon's own function in a loop) against stacked per shape (`zeropower_via_newtonschulz`,
   what DistributedMuon runs), the same bf16 arithmetic (bit for bit on CPU).
2. 2 ranks (torchrun, gloo), the tiny recipe's Llama under FSDP2 (every block, then the root, as
   train/parallel/ shards it), the project's optimizers (`train.optim.build_optimizer`): the optimizer step of
   AdamW over every parameter against MuonAdamW (DistributedMuon for the hidden matrices + AdamW), and whole
   training steps (forward, backward, step) of each.
Timings are medians over interleaved repetitions, in ms, on two clocks: `wall`, and `cpu` (the calling thread's
CPU time, which other jobs on a shared machine inflate far less; multi-rank: the max over ranks). Last stdout
line: {"bench": "muon_newton_schulz", "per_matrix_ms", "stacked_ms", "stacked_speedup", "fsdp2_2_ranks":
{"adamw_step_ms", "muon_step_ms", "muon_over_adamw", "train_step_ms": {...}}, "threads", "load_avg"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz  # noqa: E402

from pretrain.config.optimizer import OptimizerConfig  # noqa: E402
from pretrain.train.newton_schulz import NS_COEFFICIENTS, zeropower_via_newtonschulz  # noqa: E402
from pretrain.train.optim import build_optimizer  # noqa: E402

TINY_SHAPES = [(128, 128)] * 16 + [(384, 128)] * 8 + [(128, 384)] * 4
TINY = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    tie_word_embeddings=True,
    vocab_size=4096,
)


def interleaved(
    fns: dict[str, Callable[[], object]], iters: int, sync: Callable[[], None] = lambda: None
) -> dict:
    """Median ms of each function, run in turn `iters` times after 2 warm-up rounds, on the wall and CPU clocks."""
    times = {k: {"wall": [], "cpu": []} for k in fns}
    for i in range(2 + iters):
        for name, fn in fns.items():
            sync()
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            sync()
            if i >= 2:
                times[name]["wall"].append((time.perf_counter() - w0) * 1e3)
                times[name]["cpu"].append((time.thread_time() - c0) * 1e3)
    return {k: {c: round(statistics.median(v[c]), 3) for c in v} for k, v in times.items()}


def single(iters: int) -> dict:
    torch.manual_seed(0)
    mats = [torch.randn(s) for s in TINY_SHAPES]
    shapes = sorted({m.shape for m in mats})
    stacks = [torch.stack([m for m in mats if m.shape == s]) for s in shapes]
    for stack in stacks:  # the same numbers, stacked or not
        assert torch.equal(
            zeropower_via_newtonschulz(stack),
            torch.stack([torch_newton_schulz(m, NS_COEFFICIENTS, 5, 1e-7) for m in stack]),
        )
    return interleaved(
        {
            "per_matrix": lambda: [torch_newton_schulz(m, NS_COEFFICIENTS, 5, 1e-7) for m in mats],
            "stacked": lambda: [zeropower_via_newtonschulz(s) for s in stacks],
        },
        iters,
    )


def worker(out: str, iters: int) -> None:
    """One of 2 ranks: the tiny Llama under FSDP2, AdamW vs MuonAdamW."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = torch.randint(0, 4096, (16, 65), generator=torch.Generator().manual_seed(0))
    x = data[rank * 8 : (rank + 1) * 8]
    variants = {}
    for name in ("adamw", "muon"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **TINY))
        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
        variants[name] = (model, build_optimizer(model, OptimizerConfig(name=name), "cpu"))

    def train_step(model, opt) -> Callable[[], None]:
        def fn() -> None:
            model(input_ids=x[:, :-1], labels=x[:, 1:]).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return fn

    train = interleaved({k: train_step(*v) for k, v in variants.items()}, iters, sync=dist.barrier)
    for model, _ in variants.values():
        model(input_ids=x[:, :-1], labels=x[:, 1:]).loss.backward()  # gradients kept for the step-only timing
    steps = interleaved({k: opt.step for k, (_, opt) in variants.items()}, iters, sync=dist.barrier)
    result = {}
    for section, values in (("opt_step_ms", steps), ("train_step_ms", train)):
        result[section] = {}
        for k, v in values.items():
            t = torch.tensor([v["wall"], v["cpu"]])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            result[section][k] = {"wall": round(t[0].item(), 3), "cpu": round(t[1].item(), 3)}
    if rank == 0:
        Path(out).write_text(json.dumps({"world": world, **result}))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per process (and per rank)")
    ap.add_argument("--quick", action="store_true", help="3 iterations: checks that it runs")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.iters = 3
    if args.worker_out:
        return worker(args.worker_out, args.iters)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    ns = single(args.iters)
    print(
        f"Newton-Schulz, 28 matrices: per matrix {ns['per_matrix']} ms, stacked {ns['stacked']} ms",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "fsdp2.json")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO / "src")}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", __file__]
        cmd += ["--iters", str(args.iters), "--worker-out", str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        fsdp = json.loads(out.read_text())
    adamw, muon = fsdp["opt_step_ms"]["adamw"], fsdp["opt_step_ms"]["muon"]
    print(f"FSDP2 x 2 ranks, optimizer step: AdamW {adamw} ms, Muon + AdamW {muon} ms", flush=True)
    print(f"FSDP2 x 2 ranks, train step: {fsdp['train_step_ms']}", flush=True)
    print(
        json.dumps(
            {
                "bench": "muon_newton_schulz",
                "per_matrix_ms": ns["per_matrix"],
                "stacked_ms": ns["stacked"],
                "stacked_speedup": {
                    c: round(ns["per_matrix"][c] / ns["stacked"][c], 3) for c in ("wall", "cpu")
                },
                "fsdp2_2_ranks": {
                    "adamw_step_ms": adamw,
                    "muon_step_ms": muon,
                    "muon_over_adamw": {c: round(muon[c] / adamw[c], 2) for c in ("wall", "cpu")},
                    "train_step_ms": fsdp["train_step_ms"],
                },
                "threads": args.threads,
                "load_avg": [round(load, 1), round(os.getloadavg()[0], 1)],
            }
        )
    )


if __name__ == "__main__":
    main()

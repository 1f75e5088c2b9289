"""Training throughput: our training step (the code `pretrain train` runs) vs a plain Hugging Face loop.

    python bench/train_throughput.py                       # CUDA: SmolLM2-135M, SmolLM2-360M, Llama-1B shapes
    python bench/train_throughput.py --device cpu --tiny   # CPU smoke version (CI checks it runs)
    python bench/train_throughput.py --device cpu --shapes tiny   # the tiny recipe's own shape (4,096 vocab)
    python bench/train_throughput.py --set train.compile=false --set train.precision=bf16-true
    OMP_WAIT_POLICY=PASSIVE python bench/train_throughput.py --device cpu --tiny --clock cpu   # a loaded CPU
    python bench/train_throughput.py --device cpu --shapes tiny --lever plain=train.fused_cross_entropy=false \
        --lever bf16=train.precision=bf16-mixed --lever 1-thread=threads=1   # more of ours, interleaved too

Both loops run in the same process on random tokens (vocab 49,152, seq 2,048 on GPU): ours is
`pretrain.train.step.forward_backward` + `clip_gradients` + the optimizer from `pretrain.train.optim`,
with the recipe's levers (`train.compile`, `train.precision`, `train.optimizer.fused`, `train.liger_kernels`,
`train.fused_cross_entropy`);
the baseline is `model(input_ids, labels=labels).loss.backward()` under bf16 autocast with fp32 weights and
foreach AdamW, no compile (fp32 without autocast on CPU). On CUDA the loops are timed one after the other;
on CPU their steps alternate and each side's median step time counts, so a shared machine's load falls on
both alike. `--clock cpu` times each step in process CPU time instead of wall time: on a machine other jobs
load, OpenMP threads that lose their core stall every parallel region, so wall-time ratios swing by 2x from
run to run, while CPU time (with OMP_WAIT_POLICY=PASSIVE, so waiting threads sleep rather than spin and bill)
measures the work done: for the plain step it gave 1.005-1.037x (--tiny) and 0.961x (tiny) where a quiet
machine's wall time gave 1.025x and 0.954x.
`--lever NAME=KEY=VALUE[,KEY=VALUE...]` (CPU, repeatable) adds a variant of ours with those overrides on top
(`threads=N`: torch threads during its steps) to the same interleaving; each row then gives every lever's
speedup over the baseline under `levers`.
MFU = model FLOPs (planning.flops: 6N + attention) x tokens/s / device peak.
Last stdout line: {"bench": "train_throughput", "device": ..., "clock": "wall"|"cpu" (CPU only),
"results": [{"shape", "ours_tok_s", "ours_mfu", "baseline_tok_s", "baseline_mfu", "speedup", "peak_mem_gb"
[, "levers": {NAME: speedup}]}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pretrain.config import load_recipe  # noqa: E402
from pretrain.config.parallelism import MeshShape  # noqa: E402
from pretrain.modeling import build_hf_config, count_parameters, init_weights  # noqa: E402
from pretrain.scaling.flops import device_peak_flops, flops_per_token  # noqa: E402
from pretrain.train.optim import build_optimizer  # noqa: E402
from pretrain.train.parallel.mesh import Parallelism  # noqa: E402
from pretrain.train.parallel.parallelize import parallelize  # noqa: E402
from pretrain.train.precision import precision_that_runs  # noqa: E402
from pretrain.train.step import clip_gradients, forward_backward  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = {
    "smollm2-135m": "recipes/smollm2-135m/config.yaml",
    "smollm2-360m": "recipes/smollm2-360m/config.yaml",
    "llama-1b": "recipes/llama-1b/config.yaml",
}
# the tiny recipe at its own shape and vocabulary (CPU): `--shapes tiny`
OWN_SHAPES = {"tiny": "recipes/tiny/config.yaml"}
TINY = [
    "model.hidden_size=128",
    "model.intermediate_size=384",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=4",
    "model.num_key_value_heads=4",
    "model.max_position_embeddings=256",
    "train.seq_len=256",
    "train.micro_batch_size=4",
    "train.global_batch_tokens=1024",
    "train.compile=false",
]


def _random_batches(vocab: int, batch: int, seq: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        yield {"input_ids": x[:, :-1].to(device), "labels": x[:, 1:].to(device)}


def _model(recipe, vocab: int, device: torch.device):
    from transformers import AutoModelForCausalLM

    config = build_hf_config(recipe, vocab)
    config.use_cache = False
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    init_weights(model, recipe.model.init_std, True, config.num_hidden_layers)
    return model, config


def _time(step, warmup: int, iters: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def _time_interleaved(steps: dict, warmup: int, iters: int, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per step of each loop, their steps alternating: on a shared CPU the load changes
    between two back-to-back timings by more than the levers do, so both sides must see the same load."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            start = clock()
            step()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def make_ours(recipe, vocab, device):
    """Our step at `recipe`. On CPU bf16-mixed runs under a CPU autocast of its own, as accelerate's does:
    accelerate allows one mixed precision per process, and levers of both kinds share this one."""
    from accelerate import Accelerator

    from pretrain.train.precision import mixed_precision
    from pretrain.train.setup import build_fused_head

    own_autocast = device.type == "cpu" and precision_that_runs(recipe) == "bf16-mixed"
    precision = "no" if own_autocast else mixed_precision(recipe)
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    model, config = _model(recipe, vocab, device)
    if recipe.train.precision == "bf16-true":
        model = model.to(torch.bfloat16)
    model.to(device)
    fused_head = build_fused_head(model, recipe, device.type, sharded=False)
    # one process: the training's own parallelisation is torch.compile per block (and nothing else)
    parallelize(model, Parallelism(MeshShape()), compile_blocks=recipe.train.compile)
    opt = build_optimizer(model, recipe.train.optimizer, device.type)
    batches = _random_batches(vocab, recipe.train.micro_batch_size, recipe.train.seq_len, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=own_autocast):
            forward_backward(model, batches, 1, acc, z_loss=recipe.train.z_loss, fused_head=fused_head)
        clip_gradients(model, recipe.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, config


def make_lever(spec: str, recipe_for, vocab, device) -> tuple[str, callable, int]:
    """`NAME=KEY=VALUE[,KEY=VALUE...]` -> (NAME, its step, tokens per step): ours with those overrides
    (`threads=N` sets the torch threads during the step). A lever may change the tokens a step takes
    (`train.micro_batch_size`, `train.seq_len`), so its speed is compared in tokens/s, not steps/s."""
    name, _, sets = spec.partition("=")
    overrides = [kv for kv in sets.split(",") if kv]
    threads = [int(kv.partition("=")[2]) for kv in overrides if kv.startswith("threads=")]
    overrides = [kv for kv in overrides if not kv.startswith("threads=")]
    recipe = recipe_for(overrides)
    tokens = recipe.train.micro_batch_size * recipe.train.seq_len
    inner, _ = make_ours(recipe, vocab, device)
    if not threads:
        return name, inner, tokens

    def step():
        before = torch.get_num_threads()
        torch.set_num_threads(threads[0])
        try:
            inner()
        finally:
            torch.set_num_threads(before)

    return name, step, tokens


def make_baseline(recipe, vocab, device):
    model, _ = _model(recipe, vocab, device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    batches = _random_batches(vocab, recipe.train.micro_batch_size, recipe.train.seq_len, device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        b = next(batches)
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            # HF shifts labels itself: pass the inputs as labels, as a plain HF loop does
            loss = model(input_ids=b["input_ids"], labels=b["input_ids"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke run)")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument(
        "--lever",
        dest="levers",
        action="append",
        default=[],
        help="CPU: NAME=KEY=VALUE[,KEY=VALUE...] another variant of ours, interleaved too (repeatable)",
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="CPU only: time steps in wall time or in process CPU time (a loaded machine; see the docstring)",
    )
    args = p.parse_args()
    if args.clock == "cpu" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("warning: --clock cpu without OMP_WAIT_POLICY=PASSIVE bills spinning threads", file=sys.stderr)
    device = torch.device(args.device)
    if args.levers and device.type != "cpu":
        p.error("--lever interleaves steps, which only the CPU timing does; use --set on GPUs")
    iters = args.iters or (5 if args.tiny else 20)
    warmup = 1 if args.tiny else 5
    peak = device_peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    results = []
    for shape in args.shapes.split(","):
        own = shape in OWN_SHAPES
        shrink = TINY if args.tiny and not own else []
        overrides = ["accelerate_config=null", *shrink, *args.overrides]  # one process

        def recipe_for(extra: list[str], shape=shape, overrides=overrides):
            path = REPO / {**SHAPES, **OWN_SHAPES}[shape]
            return load_recipe(path, overrides=[*overrides, *extra], check_files=False)

        recipe = recipe_for([])
        vocab = recipe.tokenizer.vocab_size if own else 49_152
        mem = None
        if device.type == "cuda":  # one loop at a time: two models of 1B may not fit beside each other
            torch.cuda.reset_peak_memory_stats(device)
            ours_step, config = make_ours(recipe, vocab, device)
            ours_s = _time(ours_step, warmup, iters, device)
            mem = torch.cuda.max_memory_allocated(device) / 2**30
            del ours_step
            base_s = _time(make_baseline(recipe, vocab, device), warmup, iters, device)
        else:
            ours_step, config = make_ours(recipe, vocab, device)
            steps = {"ours": ours_step, "baseline": make_baseline(recipe, vocab, device)}
            made = [make_lever(spec, recipe_for, vocab, device) for spec in args.levers]
            levers = {name: step for name, step, _ in made}
            lever_tokens = {name: tokens for name, _, tokens in made}
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            timed = _time_interleaved({**steps, **levers}, warmup, iters, clock)
            ours_s, base_s = timed["ours"], timed["baseline"]
        tokens = recipe.train.micro_batch_size * recipe.train.seq_len
        _, non_emb = count_parameters(config)
        fpt = flops_per_token(config, non_emb, recipe.train.seq_len)
        ours_tps, base_tps = tokens / ours_s, tokens / base_s
        row = {
            "shape": shape + ("-tiny" if args.tiny else ""),
            "ours_tok_s": round(ours_tps, 1),
            "ours_mfu": round(fpt * ours_tps / peak, 4) if peak else None,
            "baseline_tok_s": round(base_tps, 1),
            "baseline_mfu": round(fpt * base_tps / peak, 4) if peak else None,
            "speedup": round(ours_tps / base_tps, 3),
            "peak_mem_gb": round(mem, 2) if mem else None,
        }
        if device.type == "cpu" and args.levers:
            # tokens/s against the baseline's (a lever's step may take other tokens than the baseline's)
            row["levers"] = {name: round(lever_tokens[name] / timed[name] / base_tps, 3) for name in levers}
        print(
            f"{row['shape']}: ours {ours_tps:,.0f} tok/s, baseline {base_tps:,.0f} tok/s, speedup {row['speedup']}x"
            + (f", MFU {row['ours_mfu']:.1%} vs {row['baseline_mfu']:.1%}" if peak else "")
            + "".join(f", {name} {ratio}x" for name, ratio in row.get("levers", {}).items())
        )
        results.append(row)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    clock = {"clock": args.clock} if device.type == "cpu" else {}  # tok/s are per CPU-second with `cpu`
    print(json.dumps({"bench": "train_throughput", "device": name, **clock, "results": results}))


if __name__ == "__main__":
    main()

"""The memory model against measured peaks: `pretrain plan`'s memory per device vs the peak RSS of CPU ranks
(gloo) training a ~57M-parameter Llama on several device meshes.

    python bench/parallel_memory.py                 # 4 ranks: FSDP 4, FSDP 2 x TP 2, HSDP 2 x 2, DDP 4, TP 4
    python bench/parallel_memory.py --quick         # a ~7M-parameter model, three meshes (CI's smoke test)

Each mesh runs itself under torchrun. A rank builds the model and parallelises it as `pretrain train` does
(`train/parallel/`), then frees what the build left behind (`malloc_trim`) and resets the kernel's high-water
mark of its resident set (`/proc/self/clear_refs`), trains 3 fp32 AdamW steps (micro batch 2 x 256 tokens per
data-parallel rank, the loss on the vocabulary shards under TP), and reads the high-water mark. Measured = that
peak - the RSS the process had before the model existed (Python, torch, transformers, the process group); the
largest rank counts. Planned = `scaling.memory.memory_per_device` for the same mesh, micro batch and precision
(what `pretrain plan` prints). The allocator keeps some freed memory, and CPU kernels keep temporaries the model
does not count: the ratio says how far the model is from a real peak, shape by shape.
Last stdout line: {"bench": "parallel_memory", "params", "shapes": [{"mesh", "measured_mb", "planned_mb",
"ratio"}...], "max_abs_error_pct"}.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: E402

from pretrain.config.optimizer import OptimizerConfig  # noqa: E402
from pretrain.config.parallelism import MeshShape  # noqa: E402
from pretrain.modeling import count_parameters  # noqa: E402
from pretrain.scaling.memory import memory_per_device, strategy_name  # noqa: E402
from pretrain.train.optim import build_optimizer  # noqa: E402
from pretrain.train.parallel.clip import clip_grad_norm_  # noqa: E402
from pretrain.train.parallel.mesh import build_parallelism  # noqa: E402
from pretrain.train.parallel.parallelize import loss_context, parallelize  # noqa: E402
from pretrain.train.step import causal_lm_loss  # noqa: E402

SHAPES = {  # hidden, layers, heads, intermediate, vocab
    "full": (512, 12, 8, 1536, 32000),
    "quick": (256, 4, 4, 768, 8192),
}
MESHES = {
    "full": [(1, 4, 1), (1, 2, 2), (2, 2, 1), (4, 1, 1), (1, 1, 4)],
    "quick": [(1, 4, 1), (1, 2, 2), (2, 2, 1)],
}
SEQ, MICRO, STEPS = 256, 2, 3


def status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def config(shape: str) -> LlamaConfig:
    hidden, layers, heads, inter, vocab = SHAPES[shape]
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        tie_word_embeddings=True,
        max_position_embeddings=SEQ,
    )


def worker(shape: str, sizes: tuple[int, int, int], out: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    mesh = MeshShape(*sizes)
    par = build_parallelism(mesh, "cpu")
    before_model_kb = status_kb("VmRSS")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config(shape))
    par.loss_parallel = par.tensor_parallel
    parallelize(model, par)
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw"), "cpu")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # the whole model built before sharding: give it back
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    vocab = model.config.vocab_size
    for step in range(STEPS):
        g = torch.Generator().manual_seed(step * 100 + par.data_rank)
        rows = torch.randint(0, vocab, (MICRO, SEQ + 1), generator=g)
        with loss_context(par):
            causal_lm_loss(model, {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}).backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    measured_mb = (status_kb("VmHWM") - before_model_kb) / 1024
    peaks = [None] * dist.get_world_size()
    dist.all_gather_object(peaks, measured_mb)
    if dist.get_rank() == 0:
        params, _ = count_parameters(config(shape))
        cfg = model.config
        planned = memory_per_device(
            params, cfg.num_hidden_layers, cfg.hidden_size, vocab, SEQ, MICRO, "fp32", False, mesh
        )
        (out / "result.json").write_text(
            json.dumps({"params": params, "measured_mb": max(peaks), "planned": planned})
        )
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="a ~7M-parameter model on three meshes (CI smoke test)"
    )
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        shape, r, s, t, out = args.worker
        worker(shape, (int(r), int(s), int(t)), Path(out))
        return
    shape = "quick" if args.quick else "full"
    rows, params = [], None
    for sizes in MESHES[shape]:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
            ranks = sizes[0] * sizes[1] * sizes[2]
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), __file__]
            cmd += ["--worker", shape, *map(str, sizes), tmp]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"mesh {sizes} failed:\n{proc.stderr[-4000:]}")
            result = json.loads((Path(tmp) / "result.json").read_text())
        params = result["params"]
        mesh = MeshShape(*sizes)
        planned_mb = result["planned"]["total_gb"] * 1024
        row = {
            "mesh": f"{strategy_name(mesh)} {'x'.join(map(str, sizes))}",
            "measured_mb": round(result["measured_mb"], 1),
            "planned_mb": round(planned_mb, 1),
            "ratio": round(result["measured_mb"] / planned_mb, 3),
            "planned_parts_mb": {
                k.removesuffix("_gb"): round(v * 1024, 1)
                for k, v in result["planned"].items()
                if k != "total_gb"
            },
        }
        rows.append(row)
        print(
            f"{row['mesh']:>14}: measured {row['measured_mb']:8.1f} MB, planned {row['planned_mb']:8.1f} MB "
            f"(ratio {row['ratio']:.2f}; planned {row['planned_parts_mb']})",
            flush=True,
        )
    worst = max(abs(r["ratio"] - 1) for r in rows) * 100
    print(
        json.dumps(
            {
                "bench": "parallel_memory",
                "params": params,
                "shapes": rows,
                "max_abs_error_pct": round(worst, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

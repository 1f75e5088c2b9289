"""Activation checkpointing: peak memory and step time without it, with full per-block checkpointing and with
torchtitan's selective op policy (`model.gradient_checkpointing: false | true | selective`), and the losses
of the three (equal: recomputation repeats the same ops on the same inputs).

    python bench/activation_checkpointing.py [--quick] [--seq-len 1024 --micro-batch 8 --steps 3]

Each mode trains a random-init Llama (hidden 256, 4 layers, vocab 4,096, fp32 on CPU) in its own fresh process
through the project's own `apply_activation_checkpointing`, so each peak RSS (`ru_maxrss`) is that mode's
alone; `activation_mb` is the peak over the RSS measured once the model was built, before the first step (so it
also holds AdamW's state, 2x the 5.4M weights = 43 MB, the same in every mode). Last stdout line:
{"bench": "activation_checkpointing", "peak_rss_mb": {mode: MB}, "activation_mb": {...}, "step_s": {...},
 "losses": {...}, "max_rel_loss_diff": x, "losses_equal": bool}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {"none": False, "full": True, "selective": "selective"}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, seq_len: int, micro_batch: int, steps: int) -> None:
    """One mode in this (fresh) process: print a JSON line with its losses, step time and memory."""
    sys.path.insert(0, str(REPO / "src"))
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pretrain.train.activation_checkpointing import apply_activation_checkpointing

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=seq_len,
        vocab_size=4096,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    apply_activation_checkpointing(model, MODES[mode])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(
        0, 4096, (steps + 1, micro_batch, seq_len + 1), generator=torch.Generator().manual_seed(1)
    )
    losses, times, base = [], [], _rss_mb()
    for i in range(steps + 1):  # step 0 is not timed: it creates the optimizer state
        t0 = time.perf_counter()
        logits = model(input_ids=data[i, :, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 4096), data[i, :, 1:].reshape(-1))
        del logits
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if i:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"losses": losses, "step_s": min(times), "peak_rss_mb": peak, "base_rss_mb": base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument(
        "--quick", action="store_true", help="seq 256, micro batch 4, 1 step: checks that it runs"
    )
    ap.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.seq_len, args.micro_batch, args.steps = 256, 4, 1
    if args.child:
        child(args.child, args.seq_len, args.micro_batch, args.steps)
        return
    results = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--child", mode, "--seq-len", str(args.seq_len)]
        cmd += ["--micro-batch", str(args.micro_batch), "--steps", str(args.steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"{mode}: {proc.stderr[-2000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(
            f"{mode:>9}: peak RSS {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_mb'] - r['base_rss_mb']:.0f} MB over "
            f"the built model), step {r['step_s']:.2f} s, losses {', '.join(f'{x:.6f}' for x in r['losses'])}"
        )
    ref = results["none"]["losses"]
    diff = max(abs(a - b) / abs(b) for r in results.values() for a, b in zip(r["losses"], ref))
    print(
        json.dumps(
            {
                "bench": "activation_checkpointing",
                "seq_len": args.seq_len,
                "micro_batch": args.micro_batch,
                "peak_rss_mb": {m: round(r["peak_rss_mb"], 1) for m, r in results.items()},
                "activation_mb": {
                    m: round(r["peak_rss_mb"] - r["base_rss_mb"], 1) for m, r in results.items()
                },
                "step_s": {m: round(r["step_s"], 3) for m, r in results.items()},
                "losses": {m: r["losses"] for m, r in results.items()},
                "max_rel_loss_diff": diff,
                "losses_equal": diff < 1e-6,
            }
        )
    )


if __name__ == "__main__":
    main()

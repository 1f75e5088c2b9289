"""FSDP checkpoints: full weights gathered into a loadable HF folder, optimizer saved as per-rank shards,
and loading both into a freshly sharded model reproduces the uninterrupted run's next losses exactly.
In-loop evaluation of the sharded model runs on every rank (no deadlock) and gives the unsharded numbers.

Accelerate only enables FSDP on accelerators, so the 2 CPU ranks shard with FSDP2's `fully_shard` directly
(the same wrapping accelerate applies); the save/load functions are the ones the loop calls under FSDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pretrain.core.errors import StageError
from pretrain.train import checkpoint as ckpt

WORKER = Path(__file__).with_name("fsdp_checkpoint_worker.py")


def test_fsdp_sharded_checkpoint_roundtrip(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"result-{r}.json").read_text()) for r in (0, 1))
    assert r0["step"] == 3
    assert r0["resumed"] == r0["uninterrupted"]  # exact: same shards, same reduction order
    assert r1["resumed"] == r1["uninterrupted"]
    assert r0["hf_matches_gathered"] and r0["gathered_keys"] > 10
    folder = tmp_path / "step-0000003"
    shards = sorted(p.name for p in (folder / "trainer_state" / "optimizer").iterdir())
    assert shards.count(".metadata") == 1 and len([s for s in shards if s.endswith(".distcp")]) == 2
    assert not (folder / "trainer_state" / "optimizer.pt").exists()

    assert r0["eval"] and r0["eval"] == r1["eval"] == r0["unsharded_eval"]
    assert "eval/stdlib_cloze/acc" in r0["eval"]
    assert (tmp_path / "evals" / "step-0000006.json").exists()  # written once, by rank 0

    # resuming a sharded checkpoint without FSDP is refused with the reason, not a KeyError deep in torch
    import torch

    model = torch.nn.Linear(2, 2)
    try:
        ckpt._load_optimizer(folder / "trainer_state", model, torch.optim.AdamW(model.parameters()), False)
    except StageError as exc:
        assert "sharded differently" in str(exc)
    else:
        raise AssertionError("unsharded resume of a sharded optimizer state was accepted")

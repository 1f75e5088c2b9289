"""In-loop evaluation on 2 ranks splits the documents over them and gives one process's numbers: with whole
weights on each rank (DDP) and with FSDP-sharded weights, whose forwards are collectives and so run in
lockstep (a rank out of work joins the others' forwards). Run under torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dp_eval_worker.py")


def _evaluate(tmp_path: Path, mode: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(tmp_path),
        mode,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow  # ~15 s each on a quiet machine; the default suite has no room left (CI budget)
@pytest.mark.parametrize("mode", ["fsdp", "replicated"])
def test_two_ranks_split_the_evaluation_and_give_one_process_numbers(tmp_path, mode):
    r0, r1 = _evaluate(tmp_path, mode)
    assert "eval/stdlib_cloze/acc" in r0["eval"]
    assert r0["eval"] == r0["single"]  # rank 0 aggregates every rank's documents
    assert (tmp_path / "evals" / "step-0000006.json").exists()  # written once, by rank 0
    # each rank scored its share (13 documents: 7 and 6, padded to 7 each), not every document
    assert max(r0["forwards"], r1["forwards"]) < 0.75 * r0["single_forwards"]
    if mode == "fsdp":
        assert r0["forwards"] == r1["forwards"]  # FSDP forwards are collectives: never out of step
        assert r0["lockstep_forwards"] == r1["lockstep_forwards"] == 3

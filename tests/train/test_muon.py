"""DistributedMuon: torch.optim.Muon's results bit for bit on one process and on FSDP2 / HSDP shards of 2 ranks,
its state saved and loaded through the checkpoint code's DCP path, and `pretrain train` under FSDP2 on 2 CPU
ranks giving the 1-process run's per-step losses within 1e-4 relative (slow)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pretrain.testing import write_recipe_file
from pretrain.train.metrics import step_losses
from pretrain.train.muon import DistributedMuon

WORKER = Path(__file__).with_name("muon_worker.py")
CHECKPOINT_WORKER = Path(__file__).with_name("muon_checkpoint_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# square, tall, wide, odd and tiny matrices (test_newton_schulz.py checks the tiny model's shapes)
SHAPES = [(16, 16)] * 5 + [(24, 8)] * 3 + [(8, 24)] * 2 + [(21, 12), (5, 3), (1, 4), (7, 7), (2, 9)]


def _groups(params: list) -> list[dict]:
    return [
        {"params": params[:8]},
        {"params": params[8:12], "nesterov": False, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.3},
        {"params": params[12:], "momentum": 0.9, "lr": 0.05},
    ]


def test_one_process_is_torch_muon_bit_for_bit_and_checkpoints_interchange():
    torch.manual_seed(0)
    ref = [torch.randn(s) for s in SHAPES]
    ours = [p.clone() for p in ref]
    opt_ref = torch.optim.Muon(_groups(ref), lr=0.02, weight_decay=0.1)
    opt = DistributedMuon(_groups(ours), lr=0.02, weight_decay=0.1, bucket_numel=3 * 16 * 16)  # 2 rounds
    for _ in range(4):
        for a, b in zip(ref, ours):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt_ref.step()
        opt.step()
    for a, b in zip(ref, ours):
        assert torch.equal(a, b)
        assert torch.equal(opt_ref.state[a]["momentum_buffer"], opt.state[b]["momentum_buffer"])
    opt_ref.load_state_dict(opt.state_dict())  # the same param groups and state layout as torch's
    opt.load_state_dict(opt_ref.state_dict())


def test_a_bf16_momentum_is_not_normalised_in_place():
    """torch.optim.Muon (2.13) without Nesterov normalises a bf16 momentum buffer in place; ours does not."""
    p = torch.randn(8, 4).bfloat16()
    opt = DistributedMuon([p], lr=0.0, weight_decay=0.0, nesterov=False, momentum=0.5)
    p.grad = torch.randn(8, 4).bfloat16()
    opt.step()
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.zeros_like(p).lerp_(p.grad, 0.5))


def test_other_work_between_step_begin_and_step_finish_changes_nothing():
    torch.manual_seed(0)
    a = [torch.randn(s) for s in SHAPES]
    b = [p.clone() for p in a]
    opt_a, opt_b = DistributedMuon(_groups(a), lr=0.02), DistributedMuon(_groups(b), lr=0.02)
    for _ in range(3):
        for x, y in zip(a, b):
            x.grad = torch.randn_like(x)
            y.grad = x.grad.clone()
        opt_a.step()
        handle = opt_b.step_begin()
        torch.randn(64, 64) @ torch.randn(64, 64)  # the AdamW step, in MuonAdamW
        opt_b.step_finish(handle)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def _torchrun(ranks: int, worker: Path, *args: str) -> None:
    """`worker` on `ranks` processes started directly with torchrun's variables (no launcher process: one
    interpreter and torch import fewer)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), *args],
            env={
                **ENV,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": str(ranks),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(ranks)
    ]
    errors = [(proc.returncode, err[-4000:]) for proc in procs for _, err in [proc.communicate(timeout=600)]]
    assert all(code == 0 for code, _ in errors), errors


def test_fsdp2_and_hsdp_shards_of_small_matrices_on_two_ranks_are_torch_muon_bit_for_bit():
    _torchrun(2, WORKER, "small")


@pytest.mark.slow  # the tiny model's matrices: ~35 s loaded
def test_fsdp2_and_hsdp_shards_on_two_ranks_are_torch_muon_bit_for_bit():
    _torchrun(2, WORKER, "tiny")


@pytest.mark.slow
def test_muon_state_roundtrips_through_the_sharded_checkpoint(tmp_path):
    _torchrun(2, CHECKPOINT_WORKER, str(tmp_path))


def _train(recipe, folder: Path, shards: int) -> None:
    """`pretrain train` on one process, or on `shards` FSDP2 ranks (accelerate launch, parallelism_config)."""
    recipe_file = write_recipe_file(recipe, folder / f"{recipe.out.name}.yaml")
    launcher = [sys.executable]
    if shards > 1:
        config = folder / "fsdp.yaml"
        sizes = {"parallelism_config_dp_shard_size": shards, "parallelism_config_tp_size": 1}
        settings = {"distributed_type": "MULTI_GPU", "num_machines": 1, "num_processes": shards}
        config.write_text(yaml.safe_dump({**settings, "mixed_precision": "no", "parallelism_config": sizes}))
        launcher += ["-m", "accelerate.commands.launch", "--config_file", str(config)]
    cmd = [
        *launcher,
        "-m",
        "pretrain",
        "train",
        str(recipe_file),
        "--output-dir",
        str(recipe.out),
        "--no-relaunch",
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_pretrain_train_fsdp2_on_two_ranks_gives_the_one_process_losses(make_run, tmp_path):
    """The issue's figure: 12 fp32 steps of the small run with Muon (its checkpoint at step 8 saves the sharded
    Muon state), FSDP2 over 2 CPU ranks against 1 process with the same optimizer."""
    common = (
        "eval.enabled=false",
        "train.optimizer.name=muon",
        "train.micro_batch_size=2",
        "train.tokens=6144",
    )
    runs = {}
    for shards in (1, 2):
        recipe = make_run(tmp_path / f"shards{shards}", *common)
        _train(recipe, tmp_path, shards)
        runs[shards] = step_losses(recipe.out / "metrics.jsonl")
    assert [s for s, _ in runs[2]] == [s for s, _ in runs[1]] == list(range(1, 13))
    worst = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(runs[1], runs[2]))
    print(
        f"\nFSDP2 x 2 + DistributedMuon vs 1 process: max relative loss difference {worst:.2e} over 12 steps"
    )
    assert [b for _, b in runs[2]] == pytest.approx([a for _, a in runs[1]], rel=1e-4)

"""Elastic resume: a checkpoint resumes on any world size whose micro batch x processes divides the global batch.

The fast tests here follow the data by sample (window) id: 2 ranks -> 1 rank -> 2 ranks, across an epoch
boundary, give each optimizer step exactly the windows of an uninterrupted run, none twice, none skipped.
The slow one trains for real: 2 DDP processes (gloo) die, 1 process resumes and dies, 2 processes finish;
every step's loss matches an uninterrupted 2-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from pretrain.core.errors import DataError
from pretrain.testing import write_recipe_file
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.shards import write_packed
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import step_losses

SEQ, MICRO = 16, 2
GLOBAL = 8  # windows per optimizer step: 2 ranks x micro 2 x accum 2, or 1 rank x micro 2 x accum 4


@pytest.fixture()
def tokens(tmp_path):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(1, 500, rng.integers(10, 80))) + [0] for _ in range(60)]
    write_packed(tmp_path, docs, docs[:5], vocab_size=500, eos_id=0)
    return tmp_path


def _loaders(tokens, world: int, micro: int = MICRO) -> list[TokenLoader]:
    return [
        TokenLoader(tokens, "train", SEQ, micro, rank, world, seed=7, windows_per_step=GLOBAL)
        for rank in range(world)
    ]


def _steps(loaders: list[TokenLoader], n: int) -> list[list[tuple[int, int]]]:
    """(epoch, window id) of every window each of `n` optimizer steps reads, over all ranks and micro steps."""
    accum = GLOBAL // (loaders[0].batch_size * len(loaders))
    steps = []
    for _ in range(n):
        ids = []
        for _ in range(accum):
            for loader in loaders:
                next(loader)
                ids += [(loader.epoch, int(w)) for w in loader.last_windows]
        steps.append(ids)
    return steps


def _resume(tokens, saved: dict, world: int, micro: int = MICRO) -> list[TokenLoader]:
    loaders = _loaders(tokens, world, micro)
    for loader in loaders:
        loader.load_state_dict(saved)
    return loaders


def test_two_to_one_to_two_ranks_reads_every_window_once_in_order(tokens):
    reference = _loaders(tokens, 2)
    per_epoch = reference[0].usable_windows // GLOBAL
    total = 2 * per_epoch + 3  # crosses two epoch boundaries
    expected = _steps(reference, total)

    a, b = per_epoch - 2, per_epoch + 2  # interruptions before and after the first epoch boundary
    first = _loaders(tokens, 2)
    got = _steps(first, a)
    second = _resume(tokens, first[0].state_dict(), 1)
    got += _steps(second, b - a)
    third = _resume(tokens, second[0].state_dict(), 2, micro=1)  # and another micro batch (accum 4)
    got += _steps(third, total - b)

    assert [sorted(s) for s in got] == [sorted(s) for s in expected]  # the same global batch at every step
    for epoch in (0, 1):
        seen = Counter(w for step in got for e, w in step if e == epoch)
        assert max(seen.values()) == 1  # none twice
        assert len(seen) == reference[0].usable_windows  # none skipped
    assert all(len(s) == GLOBAL for s in got)


def test_epoch_ends_on_a_whole_global_batch_whatever_the_world_size(tokens):
    one, two = _loaders(tokens, 1), _loaders(tokens, 2)
    n = one[0].usable_windows // GLOBAL + 1
    assert [sorted(s) for s in _steps(one, n)] == [sorted(s) for s in _steps(two, n)]
    assert one[0].epoch == two[0].epoch == 1


def test_loader_refuses_another_global_batch_or_data(tokens):
    saved = _loaders(tokens, 2)[0].state_dict()
    other_batch = TokenLoader(tokens, "train", SEQ, MICRO, 0, 1, seed=7, windows_per_step=2 * GLOBAL)
    with pytest.raises(DataError, match="windows_per_step=8, now 16"):
        other_batch.load_state_dict(saved)
    with pytest.raises(DataError, match="seed=7, now 8"):
        TokenLoader(tokens, "train", SEQ, MICRO, seed=8, windows_per_step=GLOBAL).load_state_dict(saved)
    with pytest.raises(DataError, match="not a multiple of micro batch 3 x 2 processes"):
        TokenLoader(tokens, "train", SEQ, 3, 0, 2, seed=7, windows_per_step=GLOBAL)


def test_older_loader_state_resumes_only_on_its_own_geometry(tokens):
    """A state written before `windows_per_step` existed carries no global batch: same geometry only."""
    old = {k: v for k, v in _loaders(tokens, 2)[0].state_dict().items() if k != "windows_per_step"}
    _resume(tokens, old, 2)
    with pytest.raises(DataError, match="an older checkpoint"):
        _resume(tokens, old, 1)


def test_rank_state_on_another_world_size_is_rank_zeros(tmp_path):
    ts = tmp_path / ckpt.TRAINER_STATE
    ts.mkdir()
    (ts / ckpt.STATE_JSON).write_text(json.dumps({"world_size": 2}))
    for rank in (0, 1):
        (ts / ckpt.rank_state_name(rank)).write_text(json.dumps({"rank": rank}))
    assert ckpt.load_rank_state(tmp_path, 1, 2) == {"rank": 1}  # same world size: its own
    assert ckpt.load_rank_state(tmp_path, 0, 1) == {"rank": 0}
    assert [ckpt.load_rank_state(tmp_path, r, 4)["rank"] for r in range(4)] == [0, 0, 0, 0]
    (ts / ckpt.rank_state_name(1)).unlink()
    with pytest.raises(Exception, match="rank-00001.json: missing"):
        ckpt.load_rank_state(tmp_path, 1, 2)


# ---------------------------------------------------------------------------------------------- real runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
MULTI = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no"]


def _train(recipe, tmp_path, name: str, ranks: int, *overrides: str) -> subprocess.CompletedProcess:
    path = write_recipe_file(recipe, tmp_path / f"{name}.yaml")
    prefix = (
        [sys.executable, *MULTI, "--num_processes", str(ranks), "--dynamo_backend", "no"] if ranks > 1 else []
    )
    prefix = prefix or [sys.executable]
    cmd = [*prefix, "-m", "pretrain", "train", str(path), "--output-dir", str(recipe.out), "--no-relaunch"]
    for o in overrides:
        cmd += ["--set", o]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_ddp_two_ranks_then_one_then_two_matches_an_uninterrupted_run(fresh_run, tmp_path):
    # synchronous saves: a process that dies 3 steps after a checkpoint always finds it complete (a background
    # write may still be in flight at the crash, and the run would rightly resume from the one before)
    common = (
        "eval.enabled=false",
        "train.checkpoint.every_steps=4",
        "train.checkpoint.async_save=false",
        "train.validation.every_fraction=1.0",
    )
    reference, ref_out = fresh_run("reference", *common)
    elastic, out = fresh_run("elastic", *common)
    proc = _train(reference, tmp_path, "reference", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # every rank dies at attempt 7 (checkpoint at 4), 1 rank resumes and dies at 15 (checkpoint at 12), 2 finish
    died = _train(elastic, tmp_path, "a", 2, "train.fault_injection.die_at=7")
    assert died.returncode != 0 and not (out / "final").exists()
    single = _train(elastic, tmp_path, "b", 1, "train.fault_injection.die_at=15")
    assert single.returncode == 17, single.stderr[-3000:]
    assert "written by 2 processes (micro batch 4, grad accumulation 1); resuming on 1" in single.stderr
    assert "grad accumulation 2)" in single.stderr
    final = _train(elastic, tmp_path, "c", 2)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "written by 1 processes (micro batch 4, grad accumulation 2); resuming on 2" in final.stderr

    ref, got = step_losses(ref_out / "metrics.jsonl"), step_losses(out / "metrics.jsonl")
    assert [s for s, _ in got] == [s for s, _ in ref] == list(range(1, 25))
    print("\nstep  uninterrupted(2)  elastic(2->1->2)")
    for (s, a), (_, b) in zip(ref, got):
        world = 1 if 4 < s <= 12 else 2
        print(f"{s:4d}  {a:.8f}  {b:.8f}  ({world} rank{'s' if world > 1 else ''})")
    assert [b for _, b in got] == pytest.approx([a for _, a in ref], rel=1e-4)
    # the data position is exact: the final loader state equals the uninterrupted run's
    last = "step-0000024"
    loader = [
        json.loads((o / "checkpoints" / last / "trainer_state" / "rank-00000.json").read_text())["loader"]
        for o in (ref_out, out)
    ]
    assert loader[0] == loader[1]

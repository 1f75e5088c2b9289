"""Throughput levers give the same losses as the plain path within tolerance (CPU): fused vs foreach AdamW,
torch.compile, bf16 parameters. The speed of each lever is measured by bench/train_throughput.py on a GPU."""

from __future__ import annotations

import json
import shutil

import pytest

from pretrain.train import run_training


def _losses(out):
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r and "event" not in r]


@pytest.fixture()
def train(small_run, make_small_recipe, tmp_path):
    _, src = small_run

    def run(name, *overrides):
        out = tmp_path / name
        out.mkdir()
        for stage in ("mix", "tokenizer", "tokens"):
            shutil.copytree(src / stage, out / stage)
        recipe = make_small_recipe(out, "eval.enabled=false", "train.tokens=4096", *overrides)
        run_training(recipe, resume="never")
        return _losses(out)

    return run


def test_fused_adamw_matches_foreach(train):
    base = train("foreach", "train.optimizer.fused=off")
    fused = train("fused", "train.optimizer.fused=on")
    assert fused == pytest.approx(base, rel=1e-5)


def test_bf16_params_track_fp32(train):
    base = train("fp32", "train.precision=fp32")
    bf16 = train("bf16", "train.precision=bf16-true")
    assert bf16 == pytest.approx(base, rel=0.03)  # bf16 has ~3 significant digits


@pytest.mark.slow
def test_compile_matches_eager(train):
    base = train("eager")
    compiled = train("compiled", "train.compile=true")
    assert compiled == pytest.approx(base, rel=1e-3)

"""`pretrain average`: the weights are the (weighted) mean of the ingredients', the folder loads with
`from_pretrained`, and every ingredient and the average are evaluated on the run's val split the way training's
validation records are (the newest ingredient's figure equals its record in metrics.jsonl)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from pretrain.commands.average import average_checkpoints
from pretrain.core.errors import PretrainError
from pretrain.testing import run_train_stage
from pretrain.train.average import AVERAGING_JSON
from pretrain.train.checkpoint import seal_checkpoint
from pretrain.train.metrics import read_records, validation_records


@pytest.fixture(scope="module")
def trained(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("avg") / "run"
    recipe = make_run(
        out,
        "eval.enabled=false",
        "train.tokens=6144",  # 12 steps
        "train.checkpoint.every_steps=4",
        "train.validation.every_fraction=1.0",
    )
    run_train_stage(recipe, resume="never")
    return out, [out / "checkpoints" / f"step-{s:07d}" for s in (4, 8, 12)]


@pytest.mark.slow
def test_average_cli_writes_the_mean_and_evaluates_it(trained, tmp_path):
    run, ckpts = trained
    out = tmp_path / "avg"
    cmd = [sys.executable, "-m", "pretrain", "average", *map(str, ckpts), "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print("\n" + proc.stdout)

    ingredients = [load_file(c / "model.safetensors") for c in ckpts]
    averaged = load_file(out / "model.safetensors")
    assert averaged.keys() == ingredients[0].keys()
    for name, tensor in averaged.items():
        expected = sum(i[name].float() for i in ingredients) / 3
        torch.testing.assert_close(tensor.float(), expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(averaged["model.norm.weight"], ingredients[-1]["model.norm.weight"])

    model = AutoModelForCausalLM.from_pretrained(out)  # a normal HF folder (tokenizer included)
    assert model.config.vocab_size == 512 and (out / "tokenizer.json").exists()
    report = json.loads((out / AVERAGING_JSON).read_text())
    assert [i["weight"] for i in report["ingredients"]] == [pytest.approx(1 / 3)] * 3
    assert report["average"]["val/loss"] > 0 and report["average"]["val/batches"] == 2
    last_record = validation_records(read_records(run / "metrics.jsonl"))[-1]
    assert last_record["step"] == 12
    assert report["ingredients"][-1]["val/loss"] == pytest.approx(last_record["val/loss"], abs=2e-5)
    assert "average -> " in proc.stdout and "val/loss" in proc.stdout


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[Path]:
    """Three small HF folders of one architecture (different random weights) with a byte-level tokenizer."""
    root = tmp_path_factory.mktemp("ingredients")
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    out = []
    for seed in range(3):
        torch.manual_seed(seed)
        folder = root / f"step-{seed:07d}"
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out.append(folder)
    return out


def test_weights_and_bad_ingredients(folders, tmp_path):
    report = average_checkpoints(folders[1:], tmp_path / "w", weights=[1.0, 3.0])
    assert [i["weight"] for i in report["ingredients"]] == [0.25, 0.75]
    assert "average" not in report  # no run folder with a val split next to these: nothing to validate on
    a, b = (load_file(c / "model.safetensors") for c in folders[1:])
    got = load_file(tmp_path / "w" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(got[name], 0.25 * a[name] + 0.75 * b[name])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "w").config.hidden_size == 16

    with pytest.raises(PretrainError, match="at least two checkpoints"):
        average_checkpoints(folders[:1], tmp_path / "x")
    with pytest.raises(PretrainError, match="2 positive numbers needed"):
        average_checkpoints(folders[:2], tmp_path / "x", weights=[1.0, -1.0])
    other = tmp_path / "other"
    shutil.copytree(folders[0], other)
    config = json.loads((other / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainError, match="config.json differs"):
        average_checkpoints([folders[0], other], tmp_path / "x")
    cut = tmp_path / "cut"  # a sealed checkpoint whose weights were truncated: a safetensors traceback before
    shutil.copytree(folders[1], cut)
    seal_checkpoint(cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PretrainError, match=r"cut: damaged, not averaged: model.safetensors: 1000 bytes"):
        average_checkpoints([folders[0], cut], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written

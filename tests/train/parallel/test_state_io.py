"""Sharded checkpoints (torch.distributed.checkpoint): every rank writes only its shard, `model.safetensors` is
consolidated from the shards (no rank gathers the model) and loads with `from_pretrained`, and a checkpoint of
one mesh loads on any other — weights and optimizer state exactly the writer's, the next losses the same.

The multi-rank cases run `mesh_checkpoint_worker.py` under torchrun (gloo, CPU) with the functions the loop calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from pretrain.config.optimizer import OptimizerConfig
from pretrain.train import checkpoint as ckpt
from pretrain.train.optim import build_optimizer
from pretrain.train.parallel import state_io

WORKER = Path(__file__).with_name("mesh_checkpoint_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _run(out: Path, mode: str, sizes: tuple[int, int, int], *folders: Path) -> None:
    ranks = sizes[0] * sizes[1] * sizes[2]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)]
    cmd = [*(launcher if ranks > 1 else [sys.executable]), str(WORKER), str(out), mode, *map(str, sizes)]
    proc = subprocess.run([*cmd, *map(str, folders)], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _equal(a: dict, b: dict, where: str = "") -> None:
    """Nested state dicts equal exactly (tensors bit for bit, plain values by ==)."""
    assert a.keys() == b.keys(), where
    for key, value in a.items():
        if isinstance(value, dict):
            _equal(value, b[key], f"{where}.{key}")
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), f"{where}.{key}"
        else:
            assert value == b[key], f"{where}.{key}"


def _json(path: Path) -> list[float]:
    return json.loads(path.read_text())


def test_two_fsdp_ranks_write_shards_that_one_process_resumes_and_from_pretrained_loads(tmp_path):
    folder = tmp_path / "step-0000003"
    _run(tmp_path, "train", (1, 2, 1), folder)
    _run(tmp_path, "load", (1, 1, 1), folder)

    reference = torch.load(tmp_path / "reference.pt", weights_only=True)
    _equal(torch.load(tmp_path / "loaded-1x1x1.pt", weights_only=True), reference)
    assert sum(isinstance(v, torch.Tensor) for v in reference["optimizer"].values()) > 20
    resumed, uninterrupted = _json(tmp_path / "resumed-1x1x1.json"), _json(tmp_path / "uninterrupted.json")
    assert resumed == pytest.approx(uninterrupted, rel=1e-5)  # 1 process vs 2: reduction order only

    shards = sorted(p.name for p in ckpt.optimizer_path(folder).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".safetensors") == [ckpt.WEIGHTS]
    assert (
        not (folder / "sharded").exists() and not (folder / ckpt.TRAINER_STATE / ckpt.OPTIMIZER_PT).exists()
    )
    assert ckpt.damage(folder) == []  # sealed: every file's size and hash in COMPLETE
    logits = json.loads((tmp_path / "logits.json").read_text())
    assert (
        logits["max_abs_diff"] <= 1e-5 * logits["scale"]
    )  # from_pretrained's logits are the training model's
    hf = AutoModelForCausalLM.from_pretrained(folder)
    assert hf.lm_head.weight is hf.model.embed_tokens.weight  # the tied head is written once, re-tied on load
    weights = hf.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in reference["model"].items())


@pytest.mark.slow
def test_a_checkpoint_moves_through_four_meshes_exactly(tmp_path):
    """FSDP 2 x TP 2 (4 ranks, vocab split unevenly) -> FSDP 2 -> one process -> HSDP 2 x 2, saved again at
    each stop: the weights and optimizer state are the first writer's at every stop, the resumed losses its."""
    chain = [(1, 2, 2), (1, 2, 1), (1, 1, 1), (2, 2, 1)]
    folders = [tmp_path / f"by-{i}" for i in range(len(chain))]
    _run(tmp_path, "train", chain[0], folders[0])
    for i, sizes in enumerate(chain[1:], start=1):
        save_to = [folders[i]] if i < len(chain) - 1 else []
        _run(tmp_path, "load", sizes, folders[i - 1], *save_to)
    reference = torch.load(tmp_path / "reference.pt", weights_only=True)
    uninterrupted = _json(tmp_path / "uninterrupted.json")
    for sizes in chain[1:]:
        tag = "x".join(map(str, sizes))
        _equal(torch.load(tmp_path / f"loaded-{tag}.pt", weights_only=True), reference, tag)
        assert _json(tmp_path / f"resumed-{tag}.json") == pytest.approx(uninterrupted, rel=1e-5), tag
    logits = json.loads(
        (tmp_path / "logits.json").read_text()
    )  # 4 ranks, FSDP 2 x TP 2, loaded by from_pretrained
    assert logits["max_abs_diff"] <= 1e-5 * logits["scale"]
    assert len(list(ckpt.optimizer_path(folders[0]).glob("*.distcp"))) == 4
    assert len(list(ckpt.optimizer_path(folders[2]).glob("*.distcp"))) == 1


# ------------------------------------------------------------------------------------------------ one process
def _llama(tie: bool, seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        tie_word_embeddings=tie,
    )
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("tie", [True, False])
def test_weights_written_from_shards_are_what_save_pretrained_writes(tmp_path, tie):
    from safetensors import safe_open

    model = _llama(tie)
    state_io.write_weights(tmp_path / "ours", state_io.model_state(model), "model.safetensors")
    model.save_pretrained(tmp_path / "theirs")
    files = {}
    for name in ("ours", "theirs"):
        with safe_open(tmp_path / name / "model.safetensors", framework="pt") as f:
            files[name] = {k: f.get_tensor(k) for k in f.keys()}
    assert files["ours"].keys() == files["theirs"].keys()
    assert ("lm_head.weight" in files["ours"]) is not tie
    assert all(torch.equal(files["ours"][k], v) for k, v in files["theirs"].items())
    other = _llama(tie, seed=1)
    state_io.read_weights(tmp_path / "theirs", other)  # save_pretrained's folder reads back the same way
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


def test_muon_adamw_state_round_trips_through_the_sharded_format(tmp_path):
    """The project's MuonAdamW is two optimizers: DCP gets them as a list, and both come back."""
    model = _llama(True)
    optimizer = build_optimizer(model, OptimizerConfig(name="muon"), "cpu")
    for _ in range(2):
        model(input_ids=torch.arange(16).view(2, 8), labels=torch.arange(16).view(2, 8)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    state_io.write_optimizer(tmp_path / "opt", state_io.optimizer_state(model, optimizer))
    fresh = build_optimizer(model, OptimizerConfig(name="muon"), "cpu")
    state_io.read_optimizer(tmp_path / "opt", model, fresh)
    _equal(fresh.state_dict(), optimizer.state_dict())


def test_a_staged_state_is_a_snapshot_the_live_training_cannot_change():
    model = _llama(tie=False)
    optimizer = build_optimizer(model, OptimizerConfig(name="adamw"), "cpu")
    model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    live = {"model": state_io.model_state(model), "optimizer": state_io.optimizer_state(model, optimizer)}
    staged = state_io.stage(live)
    _equal(staged, live)
    for name, tensor in staged["model"].items():
        assert tensor.data_ptr() != live["model"][name].data_ptr(), name  # copies, not views
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    for group in optimizer.param_groups:
        group["lr"] = 123.0  # the schedule changes a group's lr in place every step
    optimizer.step()  # moments and step counters change in place
    now = {"model": state_io.model_state(model), "optimizer": state_io.optimizer_state(model, optimizer)}
    for part in ("model", "optimizer"):
        changed = [k for k, v in now[part].items() if isinstance(v, torch.Tensor) and v.numel() > 0]
        assert changed and not any(torch.equal(staged[part][k], now[part][k]) for k in changed), part
    lrs = [v for k, v in staged["optimizer"].items() if k.endswith(".lr")]
    assert lrs and 123.0 not in lrs
    nested = {"groups": [{"lr": torch.tensor(1.0)}]}  # lists and dicts are copied, not shared
    copied = state_io.stage(nested)
    nested["groups"][0]["lr"].fill_(2.0)
    nested["groups"].append({})
    assert copied == {"groups": [{"lr": torch.tensor(1.0)}]}

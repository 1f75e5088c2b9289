"""Quality levers behind recipe keys: Muon for the hidden matrices, z-loss, QK-norm architectures (Qwen3, OLMo 2)
with tied or untied heads; each trains, resumes exactly, and saves a folder transformers loads on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch.distributed.checkpoint import FileSystemReader

from pretrain.config import load_recipe
from pretrain.config.optimizer import OptimizerConfig
from pretrain.core.errors import PretrainError, RecipeError
from pretrain.core.layout import RunLayout
from pretrain.core.lock import RunLock
from pretrain.modeling import build_model
from pretrain.testing import copy_run_up_to, run_train_stage
from pretrain.train.metrics import step_losses
from pretrain.train.muon import DistributedMuon
from pretrain.train.optim import MuonAdamW, build_optimizer, muon_parameters
from pretrain.train.step import causal_lm_losses, forward_backward

QWEN3 = (
    "model={model_type: qwen3, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, "
    "num_attention_heads: 2, num_key_value_heads: 2, head_dim: 32, max_position_embeddings: 64, "
    "tie_word_embeddings: %s}"
)


class _Tokenizer:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return 512


def _model(tiny_recipe_path, tmp_path, *overrides):
    recipe = load_recipe(
        tiny_recipe_path, overrides=["train.seq_len=64", *overrides], output_dir=str(tmp_path)
    )
    return build_model(recipe, _Tokenizer())


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_muon_trains_hidden_matrices_and_adamw_the_rest(tied, tiny_recipe_path, tmp_path):
    model = _model(tiny_recipe_path, tmp_path, QWEN3 % str(tied).lower())
    muon_ids = {id(p) for p in muon_parameters(model)}
    names = {n for n, p in model.named_parameters() if id(p) in muon_ids}
    assert names == {
        n for n, p in model.named_parameters() if n.endswith(("_proj.weight",)) and p.ndim == 2
    }  # q/k/v/o and gate/up/down: embeddings, the head, norms (incl. q_norm / k_norm) go to AdamW
    opt = build_optimizer(model, OptimizerConfig(name="muon"), "cpu")
    assert isinstance(opt, MuonAdamW) and isinstance(opt.muon, DistributedMuon)
    adamw_ids = {id(p) for g in opt.adamw.param_groups for p in g["params"]}
    assert not adamw_ids & muon_ids
    assert adamw_ids | muon_ids == {id(p) for p in model.parameters()}
    assert opt.param_groups[0]["lr"] == OptimizerConfig().lr  # the logged lr is AdamW's
    assert opt.param_groups[-1]["lr"] == OptimizerConfig().muon.lr


def test_muon_update_is_orthogonalised(tiny_recipe_path, tmp_path):
    """One Muon step moves a matrix by lr * (a near-orthogonal matrix): all singular values of the update ~1."""
    model = _model(tiny_recipe_path, tmp_path, QWEN3 % "true")
    cfg = OptimizerConfig(name="muon", muon={"lr": 0.01, "nesterov": False, "momentum": 0.0})
    opt = build_optimizer(model, cfg, "cpu")
    w = model.model.layers[0].mlp.down_proj.weight  # 64 x 128
    before = w.detach().clone()
    ids = torch.randint(0, 512, (8, 32), generator=torch.Generator().manual_seed(0))  # full-rank gradients
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    update = (before - w.detach()) / 0.01
    s = torch.linalg.svdvals(update)
    assert (
        s.min() > 0.3 and s.max() < 1.5
    )  # Newton-Schulz gives singular values in ~[0.5, 1.5], not the grad's


def test_z_loss_gradient_and_logging(tiny_recipe_path, tmp_path):
    from accelerate import Accelerator

    model = _model(tiny_recipe_path, tmp_path)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 512, (2, 17), generator=g)
    batch = {"input_ids": x[:, :-1], "labels": x[:, 1:]}
    ce, z = causal_lm_losses(model, batch)
    logits = model(input_ids=batch["input_ids"]).logits.float()
    assert z.item() == pytest.approx(torch.logsumexp(logits, -1).pow(2).mean().item(), rel=1e-6)
    expected = torch.autograd.grad(ce + 0.1 * z, model.lm_head.weight)[0]
    acc = Accelerator(cpu=True)
    loss, _, logged_z = forward_backward(model, iter([batch]), 1, acc, z_loss=0.1)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-6)  # the reported loss is the cross-entropy
    assert logged_z.item() == pytest.approx(z.item(), rel=1e-6)
    torch.testing.assert_close(model.lm_head.weight.grad, expected)
    model.zero_grad()
    _, _, none = forward_backward(model, iter([batch]), 1, acc)
    assert none is None and not torch.allclose(model.lm_head.weight.grad, expected)


def test_qwen3_without_head_dim_is_a_clear_error(tiny_recipe_path, tmp_path):
    spec = "model={model_type: qwen3, hidden_size: 64, num_attention_heads: 2, max_position_embeddings: 256}"
    with pytest.raises(RecipeError, match="model.head_dim: the qwen3 config defaults head_dim to 128"):
        load_recipe(tiny_recipe_path, overrides=[spec], output_dir=str(tmp_path))


LEVERS = (
    "eval.enabled=false",
    "train.optimizer.name=muon",
    "train.z_loss=0.0001",
    QWEN3 % "false",
)


@pytest.fixture(scope="module")
def lever_run(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("levers") / "run"
    recipe = make_run(out, *LEVERS)
    run_train_stage(recipe, resume="never")
    return recipe, out


def test_levers_train_and_log_z_loss(lever_run):
    _, out = lever_run
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r and "step" in r and "event" not in r]
    assert len(steps) == 24 and all(r["z_loss"] > 0 for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_muon_resume_is_exact(lever_run, fresh_run):
    _, ref_out = lever_run
    recipe, out = fresh_run("resumed", *LEVERS)
    copy_run_up_to(ref_out, out, 8)
    saved = FileSystemReader(out / "checkpoints" / "step-0000008" / "trainer_state" / "optimizer")
    names = list(saved.read_metadata().state_dict_metadata)
    # both optimizers' state is checkpointed, keyed by parameter: Muon's momentum and AdamW's moments
    assert any(n.endswith("q_proj.weight.momentum_buffer") for n in names)
    assert any(n.endswith("embed_tokens.weight.exp_avg") for n in names)
    run_train_stage(recipe, resume="auto")
    assert step_losses(out / "metrics.jsonl") == step_losses(ref_out / "metrics.jsonl")


def test_saved_model_loads_and_generates_without_project_code(lever_run, tmp_path):
    """final/ is a plain transformers folder: a fresh interpreter with no project code on its path loads it
    with AutoModelForCausalLM / AutoTokenizer and generates."""
    _, out = lever_run
    script = (
        "import sys, json\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"path = {str(out / 'final')!r}\n"
        "tok = AutoTokenizer.from_pretrained(path)\n"
        "model = AutoModelForCausalLM.from_pretrained(path)\n"
        "ids = tok('def read_file(path):', return_tensors='pt').input_ids\n"
        "gen = model.generate(ids, max_new_tokens=8, do_sample=False)\n"
        "print(json.dumps({'type': model.config.model_type, 'new': gen.shape[1] - ids.shape[1],\n"
        "  'pretrain': any(m == 'pretrain' or m.startswith('pretrain.') for m in sys.modules),\n"
        "  'tied': model.lm_head.weight is model.model.embed_tokens.weight}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"type": "qwen3", "new": 8, "pretrain": False, "tied": False}


def test_muon_trains_under_fsdp_and_is_a_clear_error_under_tensor_parallel(repo_root, tmp_path):
    recipe = repo_root / "recipes" / "llama-1b" / "config.yaml"  # launched with accelerate_configs/fsdp.yaml
    assert load_recipe(recipe, output_dir=str(tmp_path), check_files=False).train.optimizer.name == "muon"
    tp = tmp_path / "tp.yaml"  # 4 FSDP shards x 2 tensor-parallel slices
    sizes = {"parallelism_config_dp_shard_size": 4, "parallelism_config_tp_size": 2}
    tp.write_text(
        yaml.safe_dump({"distributed_type": "MULTI_GPU", "num_processes": 8, "parallelism_config": sizes})
    )
    with pytest.raises(RecipeError, match="train.optimizer.name: muon orthogonalises whole matrices"):
        load_recipe(
            recipe, overrides=[f"accelerate_config={tp}"], output_dir=str(tmp_path), check_files=False
        )


def test_resuming_muon_state_with_adamw_is_a_clear_error(lever_run, fresh_run):
    _, ref_out = lever_run
    adamw = [lever for lever in LEVERS if not lever.startswith("train.optimizer.name")] + [
        "train.optimizer.name=adamw"
    ]
    recipe, out = fresh_run("switched", *adamw)
    shutil.copytree(ref_out / "checkpoints" / "step-0000008", out / "checkpoints" / "step-0000008")
    with pytest.raises(
        PretrainError, match=r"optimizer state does not fit this run's optimizer \(AdamW\)"
    ) as failed:
        run_train_stage(recipe, resume="auto")
    # a failed restore frees the output_dir itself (`failed` keeps the trainer's frames, so its lock, alive)
    after = RunLock(RunLayout(out).lock)
    after.acquire()
    after.release()
    del failed


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_document_masking_keeps_attention_within_documents(attn, tiny_recipe_path, tmp_path):
    # train.document_masking: the loader restarts positions after each EOS, and transformers builds a
    # block-diagonal causal mask from restarting position ids (no attention mask, no cache): a document's
    # logits in a packed row are then those of the document alone
    from pretrain.tokens.windows import window_batch
    from pretrain.train.step import _output

    model = _model(tiny_recipe_path, tmp_path, f"model.attn_implementation={attn}").eval()
    eos = _Tokenizer.eos_token_id
    first, second = [5, 9, 14, 3, 7, eos], [11, 4, 8, 20, 6, 13, 10]
    rows = np.array([first + second + [12]])  # a window of T + 1 tokens
    alone = model(input_ids=torch.tensor([second]), use_cache=False).logits[0]
    with torch.no_grad():
        masked = _output(model, window_batch(rows, eos))[0, len(first) :]
        packed = _output(model, window_batch(rows))[0, len(first) :]
    assert torch.allclose(masked, alone, atol=1e-5)
    assert not torch.allclose(packed, alone, atol=1e-3)  # without it, the second document sees the first

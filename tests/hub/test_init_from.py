"""Continued pretraining from a Hub model: a parent pushed to the loopback Hub API is pulled by `model.init_from`
(config + safetensors, tokenizer from the same repo), the first training loss equals the parent's loss on that
batch, far below a random init's, and the card names the parent and its commit. Conflicting architecture keys,
a malformed id and an unreachable Hub are one-line errors before any training.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from pretrain.commands.card import write_model_card
from pretrain.core.errors import RecipeError
from pretrain.modeling import build_model
from pretrain.modeling.parent import parent_conflicts
from pretrain.testing import run_train_stage, write_recipe_file
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.tokenizer import load_tokenizer
from pretrain.train.metrics import read_records, step_losses
from pretrain.train.step import causal_lm_loss

PARENT_REPO = "user/parent-lm"


@pytest.fixture(scope="module")
def parent_final(make_run, tmp_path_factory):
    """A parent trained for 48 steps (its loss is far below a random init's)."""
    out = tmp_path_factory.mktemp("parent") / "run"
    recipe = make_run(out, "eval.enabled=false", "train.tokens=24576", "train.checkpoint.every_steps=48")
    return run_train_stage(recipe, resume="never")


def _pretrain(env, *args, timeout=600):
    cmd = [sys.executable, "-m", "pretrain", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _child(make_run, out, tmp_path, *overrides):
    recipe = make_run(out, "eval.enabled=false", "train.tokens=2048", *overrides)
    return recipe, write_recipe_file(recipe, tmp_path / f"{out.name}.yaml")


def _first_batch_loss(model, recipe) -> float:
    """The loss of the first optimizer step's batch (all its micro batches), as the trainer computes it."""
    cfg = recipe.train
    loader = TokenLoader(
        recipe.layout.tokens, "train", cfg.seq_len, cfg.micro_batch_size, seed=recipe.seed,
        windows_per_step=cfg.global_batch_tokens // cfg.seq_len,
    )  # fmt: skip
    model.eval()
    with torch.no_grad():
        losses = [float(causal_lm_loss(model, next(loader))) for _ in range(cfg.grad_accum_steps(1))]
    return sum(losses) / len(losses)


def test_init_from_a_hub_model_starts_at_the_parents_loss(
    hub, parent_final, make_run, hub_env, push_cli, tmp_path
):
    env = hub_env(hub.endpoint)
    pushed = push_cli(env, parent_final, "--repo-id", PARENT_REPO)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    commit = hub.state.repos[PARENT_REPO]["branches"]["main"]["sha"]

    child, path = _child(make_run, tmp_path / "child", tmp_path, f"model.init_from={PARENT_REPO}@main")
    for stage in ("tokenizer", "pack", "train"):
        extra = ["--no-relaunch"] if stage == "train" else []
        proc = _pretrain(env, stage, path, "--output-dir", child.out, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    fetched = {p for method, p, _ in hub.state.requests if "/resolve/" in p}
    assert any(p.endswith("/model.safetensors") for p in fetched)
    assert any(p.endswith("/tokenizer.json") for p in fetched)
    assert not any(p.endswith((".bin", ".pt")) for p in fetched)  # safetensors only

    # the tokenizer came from the parent's repo: same vocabulary, token for token
    assert load_tokenizer(child.layout.tokenizer).get_vocab() == load_tokenizer(parent_final).get_vocab()
    first = step_losses(child.out / "metrics.jsonl")[0][1]
    parent = AutoModelForCausalLM.from_pretrained(parent_final)
    parent_loss = _first_batch_loss(parent, child)
    scratch = child.model_copy(update={"model": child.model.model_copy(update={"init_from": None})})
    random_init = _first_batch_loss(build_model(scratch, load_tokenizer(child.layout.tokenizer)), child)
    print(f"\nfirst loss {first:.6f}  parent on that batch {parent_loss:.6f}  random init {random_init:.6f}")
    assert first == pytest.approx(parent_loss, rel=1e-4)
    assert random_init - first > 1.0 and random_init == pytest.approx(math.log(512), abs=0.3)

    start = next(r for r in read_records(child.out / "metrics.jsonl") if r.get("event") == "start")
    assert start["parent"] == {"model": PARENT_REPO, "revision": "main", "commit": commit}
    card = write_model_card(child, child.layout.final).read_text()
    assert f"base_model: {PARENT_REPO}" in card and commit in card
    assert f"continued from {PARENT_REPO}" in card


def test_architecture_conflicts_are_errors_before_training(parent_final, make_run, tmp_path):
    recipe = make_run(
        tmp_path / "run",
        f"model.init_from={parent_final}",
        "model.hidden_size=128",
        "model.num_hidden_layers=3",
    )
    from transformers import AutoConfig

    problems = parent_conflicts(recipe, AutoConfig.from_pretrained(parent_final))
    assert len(problems) == 2
    assert "model.hidden_size: 128, but the parent" in problems[0] and "has 64" in problems[0]
    with pytest.raises(RecipeError, match="model.num_hidden_layers: 3, but the parent"):
        run_train_stage(recipe)
    assert not (recipe.out / "metrics.jsonl").exists()


def test_init_from_errors_are_one_line(tmp_path, repo_root, hub_env, hub):
    recipe = repo_root / "recipes" / "tiny" / "config.yaml"
    bad = _pretrain(hub_env(hub.endpoint), "validate", recipe, "--set", "model.init_from=not a repo!")
    assert (
        bad.returncode == 1
        and "model.init_from: 'not a repo!' is neither an existing folder" in bad.stdout + bad.stderr
    )

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = _pretrain(
        hub_env(dead),
        "tokenizer",
        recipe,
        "--output-dir",
        tmp_path / "run",
        "--set",
        "model.init_from=user/m",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = next(li for li in proc.stderr.splitlines() if li.startswith("error:"))
    assert "model.init_from: user/m: not in the local Hub cache and cannot reach the Hub" in line
    assert "connection refused" in line

    missing = _pretrain(
        hub_env(hub.endpoint),
        "tokenizer",
        recipe,
        "--output-dir",
        tmp_path / "r2",
        "--set",
        "model.init_from=user/nothing",
    )
    assert "model.init_from: user/nothing: no such model repo" in missing.stderr, missing.stderr[-2000:]

"""A context-extension stage in training: the stage's RoPE on the model and in its saved config, longer
sequences from the loader, and exact resume at the boundary and inside the long stage (1 rank here; 2 ranks in
the slow test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pretrain.commands.evaluate import EvalOptions, evaluate_one, place_of
from pretrain.testing import copy_run_up_to, run_train_stage, write_recipe_file
from pretrain.train.context_stages import ContextStages, apply_rope, rotary_modules
from pretrain.train.metrics import step_losses

MIX = "weights: {stdlib_code: 6, stdlib_docs: 3, pydoc_topics: 1}"
# 24 steps of 512 tokens (SMALL_RUN): steps 1-12 at seq 64 (micro 4 x 2 accumulations), 13-24 at 128 (micro 2)
CONTEXT = (
    f"train.data_stages=[{{name: short, share: 0.5, {MIX}}}, "
    f"{{name: long, share: 0.5, seq_len: 128, rope_theta: 40000.0, {MIX}}}]",
    "model.max_position_embeddings=128",
    "train.checkpoint.every_steps=4",
    "train.checkpoint.keep_last=6",
    "eval.enabled=false",
)


def _llama(theta: float) -> torch.nn.Module:
    config = AutoConfig.for_model(
        "llama", hidden_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=64, rope_theta=theta
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def test_apply_rope_gives_the_model_built_with_that_rope():
    model, want = _llama(10000.0), _llama(40000.0)
    ids = torch.arange(48).reshape(1, 48)
    before = model(input_ids=ids).logits
    apply_rope(model, {"rope_type": "default", "rope_theta": 40000.0})
    assert model.config.rope_parameters["rope_theta"] == 40000.0
    for got, expected in zip(rotary_modules(model), rotary_modules(want)):
        torch.testing.assert_close(got.inv_freq, expected.inv_freq, rtol=0, atol=0)
    after = model(input_ids=ids).logits
    torch.testing.assert_close(after, want(input_ids=ids).logits, rtol=0, atol=0)
    assert not torch.allclose(before, after)


def test_context_stages_apply_each_stage_rope_once_and_give_its_flops():
    model = _llama(10000.0)
    context = ContextStages(model, [None, {"rope_theta": 40000.0}], [1.0, 2.0])
    assert context.enter(0) == 1.0 and model.config.rope_parameters["rope_theta"] == 10000.0
    assert context.enter(1) == 2.0 and model.config.rope_parameters["rope_theta"] == 40000.0
    inv = rotary_modules(model)[0].inv_freq.clone()
    assert context.enter(0) == 1.0  # back: the base RoPE again
    assert not torch.equal(rotary_modules(model)[0].inv_freq, inv)


@pytest.fixture(scope="module")
def extended(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("context") / "run"
    recipe = make_run(out, *CONTEXT)
    run_train_stage(recipe)
    return recipe, out


@pytest.mark.slow  # the 24-step run costs ~20 s: over the default suite's budget
def test_the_long_stage_trains_with_its_rope_and_saves_it(extended):
    _, out = extended
    losses = step_losses(out / "metrics.jsonl")
    assert [s for s, _ in losses] == list(range(1, 25))
    configs = {
        name: json.loads((out / name / "config.json").read_text())["rope_parameters"]["rope_theta"]
        for name in ("checkpoints/step-0000012", "checkpoints/step-0000016", "final")
    }
    assert configs == {
        "checkpoints/step-0000012": 10000.0,
        "checkpoints/step-0000016": 40000.0,
        "final": 40000.0,
    }
    loader = json.loads((out / "checkpoints/step-0000016/trainer_state/rank-00000.json").read_text())[
        "loader"
    ]
    assert loader["stage"] == 1 and set(loader["sources_by_seq_len"]) == {"128"}
    summary = json.loads((out / "final" / "STAGE.json").read_text())["summary"]["data_stages"]
    assert [s["tokens"] for s in summary] == [12 * 512, 12 * 512]


@pytest.mark.slow  # needs the 24-step run
def test_pretrain_eval_reports_the_loss_by_position_bucket(extended):
    _, out = extended
    options = EvalOptions(tasks="position_loss")
    record = evaluate_one(options, out / "final", place_of(out / "final", options))
    losses = record["metrics"]
    assert list(losses) == ["eval/position_loss/loss@1-64", "eval/position_loss/loss@65-128"]
    assert all(2.0 < v < 8.0 for v in losses.values())  # nats/token of a 512-token vocabulary, partly trained


@pytest.mark.slow  # two more runs from a checkpoint
@pytest.mark.parametrize("step", [12, 16])  # at the boundary, inside the long stage
def test_resume_at_the_boundary_and_inside_the_long_stage_is_exact(extended, fresh_run, step):
    _, ref_out = extended
    recipe, out = fresh_run("run", *CONTEXT)
    copy_run_up_to(ref_out, out, step)
    run_train_stage(recipe, resume="auto")
    assert step_losses(out / "metrics.jsonl") == step_losses(ref_out / "metrics.jsonl")


@pytest.mark.slow
def test_two_ranks_resume_across_and_inside_the_long_stage_on_one_rank(make_run, tmp_path):
    """2 DDP ranks die before the boundary, 1 rank resumes across it and dies inside the long stage, 2 finish:
    every step's loss equals an uninterrupted 2-rank run's (DDP reduction order: rel 1e-4)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes", "2"]

    def train(recipe, name, ranks, *overrides):
        path = write_recipe_file(recipe, tmp_path / f"{name}.yaml")
        cmd = [*(launch if ranks > 1 else [sys.executable]), "-m", "pretrain", "train", str(path)]
        cmd += ["--output-dir", str(recipe.out), "--no-relaunch"]
        for o in overrides:
            cmd += ["--set", o]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)

    reference, elastic = make_run(tmp_path / "ref", *CONTEXT), make_run(tmp_path / "elastic", *CONTEXT)
    assert train(reference, "ref", 2).returncode == 0
    assert train(elastic, "a", 2, "train.fault_injection.die_at=10").returncode != 0  # checkpoint at 8
    single = train(elastic, "b", 1, "train.fault_injection.die_at=19")  # resumes from 8, crosses, dies at 19
    assert single.returncode == 17, single.stderr[-3000:]
    final = train(elastic, "c", 2)  # resumes inside the long stage (step 16)
    assert final.returncode == 0, final.stderr[-3000:]
    ref, got = step_losses(reference.out / "metrics.jsonl"), step_losses(elastic.out / "metrics.jsonl")
    assert [s for s, _ in got] == list(range(1, 25))
    assert [b for _, b in got] == pytest.approx([a for _, a in ref], rel=1e-4)

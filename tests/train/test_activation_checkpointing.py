"""Activation checkpointing (full and torchtitan's selective op policy) recomputes blocks and trains to the same
losses as without it; the memory it saves is measured by bench/activation_checkpointing.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pretrain.testing import run_train_stage
from pretrain.train import activation_checkpointing as ac
from pretrain.train.metrics import step_losses

SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=64,
    vocab_size=256,
)


def _train(mode, steps=3):
    """Losses and final weights of `steps` AdamW steps of a small Llama with `mode`; also how often the first
    block's MLP started a forward (a recomputed block starts it again in the backward pass)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("llama", **SHAPE), attn_implementation="sdpa"
    )
    ac.apply_activation_checkpointing(model, mode)
    model.train()
    calls = []
    model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(steps):
        logits = model(input_ids=data[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), data[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()], len(calls)


@pytest.fixture(scope="module")
def plain():
    return _train(False)


@pytest.mark.parametrize("mode", [True, "selective"])
def test_same_losses_and_weights_with_blocks_recomputed(plain, mode):
    losses, weights, calls = _train(mode)
    assert calls == 2 * plain[2]  # every block ran its forward again in the backward pass
    assert losses == pytest.approx(plain[0], rel=1e-6, abs=0)
    for got, want in zip(weights, plain[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_selective_policy_saves_attention_and_every_other_matmul():
    policy = ac.op_policy()

    class Ctx:
        is_recompute = False

    mm, relu = torch.ops.aten.mm.default, torch.ops.aten.relu.default
    sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    decisions = [policy(Ctx, op) for op in (mm, mm, mm, sdpa, relu)]
    save, recompute = ac.CheckpointPolicy.MUST_SAVE, ac.CheckpointPolicy.PREFER_RECOMPUTE
    assert decisions == [save, recompute, save, save, recompute]
    Ctx.is_recompute = True  # the recompute counts its own matmuls: the same choices again
    assert [policy(Ctx, op) for op in (mm, mm)] == [save, recompute]


@pytest.mark.slow  # two short runs (~85 s on the loaded 2 cores); the in-process tests above are the default
def test_trainer_with_selective_checkpointing_matches_plain(fresh_run):
    runs = {}
    for mode in ("false", "selective"):
        recipe, out = fresh_run(
            f"ac-{mode}", "eval.enabled=false", "train.tokens=4096", f"model.gradient_checkpointing={mode}"
        )
        run_train_stage(recipe)
        runs[mode] = [loss for _, loss in step_losses(out / "metrics.jsonl")]
    assert len(runs["false"]) == 8
    assert runs["selective"] == pytest.approx(runs["false"], rel=1e-6, abs=0)

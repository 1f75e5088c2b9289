"""A mixture of experts trains with its router's load-balancing loss in the objective (the training loop passes
no labels, so the model does not add it itself), and each step logs the aux loss and the experts' load."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pretrain.scaling.moe import MoESpec, moe_spec
from pretrain.testing import run_train_stage
from pretrain.train.moe import RouterStats
from pretrain.train.step import forward_backward

FIELDS = dict(
    hidden_size=32,
    intermediate_size=64,
    moe_intermediate_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=16,
    num_experts=4,
    num_experts_per_tok=2,
    vocab_size=50,
)


class _Accelerator:
    """One process: what forward_backward asks of accelerate."""

    device = torch.device("cpu")

    def no_sync(self, model):
        return contextlib.nullcontext()

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def reduce(self, tensor, reduction="mean"):
        return tensor


def _model(coef: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(
        AutoConfig.for_model("qwen3_moe", **FIELDS, router_aux_loss_coef=coef)
    )


def _batches():
    data = torch.randint(0, 50, (2, 4, 17), generator=torch.Generator().manual_seed(1))
    return iter([{"input_ids": d[:, :-1], "labels": d[:, 1:]} for d in data])


def _step(coef: float):
    model = _model(coef)
    router = RouterStats(moe_spec(model.config))
    loss, _, _ = forward_backward(model, _batches(), 2, _Accelerator(), router=router)
    return model, router, float(loss)


def test_the_aux_loss_is_in_the_objective_and_the_reported_loss_stays_cross_entropy():
    plain, _, plain_loss = _step(0.0)
    balanced, router, loss = _step(0.5)
    assert loss == plain_loss  # the cross-entropy, with or without the router's loss
    assert router.aux_loss > 1.0  # Switch's loss: 1 when perfectly balanced, above otherwise
    assert router.weighted == pytest.approx(0.5 * router.aux_loss)
    grads = [m.model.layers[0].mlp.gate.weight.grad for m in (plain, balanced)]
    assert not torch.allclose(*grads)  # the router learns from the balancing loss


def test_expert_load_counts_every_routed_slot_of_every_layer():
    _, router, _ = _step(0.01)
    assert router.counts.shape == (2, 4)  # layers x experts
    assert router.counts.sum(dim=1).tolist() == [2 * 4 * 16 * 2] * 2  # micro batches x rows x tokens x top_k
    low, high = router.shares()
    assert len(low) == len(high) == 2 and all(0 <= a <= 0.25 <= b <= 1 for a, b in zip(low, high))


def test_router_z_loss_is_added_when_the_config_has_one():
    model = _model(0.0)
    out = model(input_ids=torch.randint(0, 50, (2, 8)), output_router_logits=True)
    z = torch.stack([torch.logsumexp(x.float(), -1).pow(2).mean() for x in out.router_logits]).mean()
    term = RouterStats(MoESpec(4, 2, 0.0, 0.1)).objective_term(out)
    assert float(term.detach()) == pytest.approx(0.1 * float(z.detach()))


@pytest.mark.slow  # trains 8 MoE steps (~15 s): over the default suite's budget
def test_training_logs_aux_loss_objective_and_expert_shares(fresh_run):
    recipe, out = fresh_run(
        "moe",
        "eval.enabled=false",
        "train.tokens=4096",
        "model.model_type=qwen3_moe",
        "model.head_dim=32",
        "model.num_experts=4",
        "model.num_experts_per_tok=2",
        "model.moe_intermediate_size=64",
        "model.router_aux_loss_coef=0.01",
    )
    run_train_stage(recipe)
    steps = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    assert len(steps) == 8
    for record in steps:
        assert record["objective"] == pytest.approx(record["loss"] + 0.01 * record["aux_loss"], rel=1e-6)
        assert len(record["expert_share_min"]) == len(record["expert_share_max"]) == 2
        assert all(lo <= 0.25 <= hi for lo, hi in zip(record["expert_share_min"], record["expert_share_max"]))


def test_each_layer_is_balanced_on_its_own():
    """Transformers' aux_loss concatenates all layers' router logits: two layers each sending every token to its
    own two experts look perfectly balanced together. tiny-moe trained with it to 2.007 (top-2 optimum 2.0) while
    one layer sent 0.39 of its slots to one expert. The loss is now each layer's, averaged."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    router = RouterStats(MoESpec(4, 2, 1.0, 0.0))
    big = 20.0
    first = torch.tensor([[big, big, 0.0, 0.0]]).repeat(16, 1)  # every token to experts 0 and 1
    second = torch.tensor([[0.0, 0.0, big, big]]).repeat(16, 1)  # every token to experts 2 and 3
    together = float(load_balancing_loss_func((first, second), 4, 2))
    ours = float(torch.stack([router.layer_balance_loss(x) for x in (first, second)]).mean())
    assert together == pytest.approx(2.0, abs=1e-3)  # looks balanced
    assert ours == pytest.approx(4.0, abs=1e-3)  # each layer uses half its experts: twice the optimum
    model = _model(1.0)  # on one layer the loss is transformers' own
    out = model(input_ids=torch.randint(0, 50, (2, 8)), output_router_logits=True)
    single = float(load_balancing_loss_func(out.router_logits[:1], 4, 2).detach())
    assert float(router.layer_balance_loss(out.router_logits[0]).detach()) == pytest.approx(single, rel=1e-6)

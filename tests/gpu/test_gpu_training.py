"""Training on a CUDA device: bf16 autocast, torch.compile, checkpoints written from GPU tensors, fused AdamW.

Skipped without CUDA (see conftest.py). The CPU suite (tests/train/) already checks these levers for equal losses
in fp32; here they run on the device users train on. Project modules are imported inside the tests so that a
refactor of `pretrain.train` shows up as a failing GPU test, never as a collection error on CPU-only CI.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = pytest.mark.gpu

BF16_RUN = ("eval.enabled=false", "train.precision=bf16-mixed", "train.log_every=1")  # SMALL_RUN: 24 steps


def _records(out):
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _losses(out):
    return [(r["step"], r["loss"]) for r in _records(out) if "loss" in r and "event" not in r]


def _train(recipe, resume="never"):
    from pretrain.testing import run_train_stage

    return run_train_stage(recipe, resume=resume)


def _tiny_model(recipe, tokenizer, device, dtype=torch.float32):
    from pretrain.modeling import build_model

    torch.manual_seed(0)
    return build_model(recipe, tokenizer).to(device=device, dtype=dtype)


def _batch(vocab: int, device, batch: int = 4, seq: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (batch, seq + 1), generator=g)
    return {"input_ids": x[:, :-1].to(device), "labels": x[:, 1:].to(device)}


def _autocast(device, enabled=True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@pytest.fixture(scope="module")
def bf16_reference(make_run, tmp_path_factory):
    """24 steps of the small run, bf16 autocast, eager, checkpoints every 8 steps."""
    out = tmp_path_factory.mktemp("gpu_ref") / "run"
    recipe = make_run(out, *BF16_RUN)
    _train(recipe)
    return recipe, out


@pytest.fixture(scope="module")
def tokenizer(small_run):
    from pretrain.tokens.tokenizer import load_tokenizer

    recipe, _ = small_run
    return load_tokenizer(recipe.layout.tokenizer)


def test_bf16_training_run_is_finite_and_learns(bf16_reference, device):
    _, out = bf16_reference
    records = _records(out)
    losses = [loss for _, loss in _losses(out)]
    assert len(losses) == 24
    assert all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0]
    start = next(r for r in records if r.get("event") == "start")
    assert start["world_size"] == 1
    if device.type == "cuda":
        assert start["device"] == torch.cuda.get_device_name(0)
        steps = [r for r in records if "loss" in r and "event" not in r]
        assert steps[-1]["mem_gb"] > 0
        assert not any(r.get("event") == "skip" for r in records), "the spike guard skipped a bf16 step"
    assert (out / "final" / "model.safetensors").exists()


def test_bf16_autocast_step(small_run, tokenizer, device):
    """One optimizer step by hand: bf16 logits under autocast, fp32 master weights and grads, a finite loss."""
    from pretrain.train.optim import build_optimizer
    from pretrain.train.step import causal_lm_loss

    recipe, _ = small_run
    model = _tiny_model(recipe, tokenizer, device)
    model.train()
    opt = build_optimizer(model, recipe.train.optimizer, device.type)
    batch = _batch(len(tokenizer), device)
    before = [p.detach().clone() for p in model.parameters()]
    with _autocast(device):
        logits = model(input_ids=batch["input_ids"], use_cache=False).logits
        loss = causal_lm_loss(model, batch)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(math.log(len(tokenizer)), rel=0.2)  # ~uniform at init
    loss.backward()
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
    opt.step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))


def test_compiled_forward_matches_eager(small_run, tokenizer, device):
    recipe, _ = small_run
    model = _tiny_model(recipe, tokenizer, device).eval()
    batch = _batch(len(tokenizer), device)
    compiled = torch.compile(model)
    with torch.no_grad():
        eager_fp32 = model(input_ids=batch["input_ids"]).logits
        compiled_fp32 = compiled(input_ids=batch["input_ids"]).logits
        with _autocast(device):
            eager_bf16 = model(input_ids=batch["input_ids"]).logits.float()
            compiled_bf16 = compiled(input_ids=batch["input_ids"]).logits.float()
    torch.testing.assert_close(compiled_fp32, eager_fp32, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled_bf16, eager_bf16, rtol=2e-2, atol=2e-2)


def test_compiled_training_matches_eager(bf16_reference, fresh_run):
    """The loop with train.compile=true tracks the eager bf16 run (bf16 rounding differs with fused kernels)."""
    _, ref_out = bf16_reference
    recipe, out = fresh_run("compiled", *BF16_RUN, "train.compile=true")
    _train(recipe)
    eager, compiled = _losses(ref_out), _losses(out)
    assert [s for s, _ in compiled] == [s for s, _ in eager]
    # same init, same first batch: only the kernels differ
    assert compiled[0][1] == pytest.approx(eager[0][1], rel=5e-3)
    assert [x for _, x in compiled] == pytest.approx([x for _, x in eager], rel=2e-2)


@pytest.mark.parametrize(
    "precision",
    ["bf16-mixed", "bf16-true"],
)
def test_checkpoint_saved_on_gpu_reloads_with_identical_logits(
    fresh_run, tokenizer, device, tmp_path, precision
):
    """The model as the trainer builds and trains it (build_setup), saved the way checkpoints/ and final/ are,
    reloads with `from_pretrained` to the same weights and the same logits."""
    from transformers import AutoModelForCausalLM

    from pretrain.train.checkpoint import WEIGHTS, save_model_files
    from pretrain.train.parallel import state_io
    from pretrain.train.setup import build_setup
    from pretrain.train.step import causal_lm_loss

    recipe, _ = fresh_run(precision, *BF16_RUN, f"train.precision={precision}")
    setup = build_setup(recipe)
    try:
        acc, model, opt = setup.accelerator, setup.model, setup.optimizer
        for seed in range(3):  # train a little so the weights are not the init
            with acc.autocast():
                loss = causal_lm_loss(model, _batch(len(tokenizer), device, seed=seed))
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
        unwrapped = acc.unwrap_model(model).eval()
        param_dtype = next(unwrapped.parameters()).dtype
        probe = _batch(len(tokenizer), device, seed=99)["input_ids"]

        def logits(m):
            with torch.no_grad(), acc.autocast():
                return m(input_ids=probe).logits.float()

        first, second = logits(unwrapped), logits(unwrapped)
        folder = tmp_path / "ckpt"
        # what checkpoints/ and final/ are written with
        state_io.write_weights(folder, state_io.model_state(unwrapped), WEIGHTS)
        save_model_files(folder, unwrapped, tokenizer)
    finally:
        if getattr(setup, "lock", None) is not None:
            setup.lock.release()
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=param_dtype).to(device).eval()
    saved, loaded = unwrapped.state_dict(), reloaded.state_dict()
    for name, tensor in saved.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    for (name, mine), (_, theirs) in zip(unwrapped.named_buffers(), reloaded.named_buffers()):
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs), f"buffer {name} differs after reload"
    again = logits(reloaded)
    if torch.equal(first, second):  # deterministic kernels: the reload must be bit-identical
        assert torch.equal(again, first)
    else:  # pragma: no cover - only if this GPU's kernels are not run-to-run deterministic
        torch.testing.assert_close(again, first, rtol=0, atol=4 * (first - second).abs().max().item())


def test_fused_adamw_is_picked_on_cuda(small_run, tokenizer, device):
    from pretrain.config.optimizer import OptimizerConfig
    from pretrain.train.optim import build_optimizer

    recipe, _ = small_run
    assert recipe.train.optimizer.fused == "auto"
    model = _tiny_model(recipe, tokenizer, device)
    auto = build_optimizer(model, OptimizerConfig(), device.type)  # AdamW (the tiny recipe trains with Muon)
    off = build_optimizer(model, OptimizerConfig(fused=False), device.type)
    # auto means fused on CUDA and on CPU (the CPU rehearsal)
    assert auto.defaults["fused"] is True and not auto.defaults.get("foreach")
    assert not off.defaults.get("fused") and off.defaults["foreach"] is True
    with _autocast(device):  # and the fused kernel runs on these parameters
        model(input_ids=_batch(len(tokenizer), device)["input_ids"]).logits.float().mean().backward()
    auto.step()


def test_trainer_builds_fused_adamw_on_cuda(fresh_run, device):
    """The optimizer `pretrain train` builds (through accelerate) is the fused one on CUDA."""
    from pretrain.train.setup import build_setup

    recipe, _ = fresh_run("setup", *BF16_RUN, "train.optimizer.name=adamw")
    setup = build_setup(recipe)
    try:
        # accelerate's AcceleratedOptimizer wraps the torch optimizer
        opt = getattr(setup.optimizer, "optimizer", setup.optimizer)
        assert next(setup.model.parameters()).device.type == device.type
        assert bool(opt.defaults.get("fused")) == (device.type in ("cuda", "cpu"))
    finally:
        if getattr(setup, "lock", None) is not None:
            setup.lock.release()


def test_resume_from_a_gpu_checkpoint_continues_the_run(bf16_reference, fresh_run):
    """`--resume auto` from step 8 of the bf16 run gives its losses for steps 9-24 (optimizer, RNG, data)."""
    from pretrain.testing import copy_run_up_to

    _, ref_out = bf16_reference
    recipe, out = fresh_run("resumed", *BF16_RUN)
    copy_run_up_to(ref_out, out, 8)
    _train(recipe, resume="auto")
    resumed, ref = _losses(out), _losses(ref_out)
    assert [s for s, _ in resumed] == [s for s, _ in ref]
    # bit-identical where the kernels are deterministic; GPU attention backward may not be
    assert [x for _, x in resumed] == pytest.approx([x for _, x in ref], rel=1e-3)


def test_distributed_muon_on_cuda_is_torch_muon(device):
    """DistributedMuon's stacked Newton-Schulz (bmm / baddbmm) against torch.optim.Muon's per-matrix addmm on
    this device: bit for bit on CPU; cuBLAS may pick other kernels for batched and single GEMMs, which could
    differ by bf16 rounding only (bounded here by a few bf16 ulps of each step's update)."""
    from pretrain.train.muon import DistributedMuon

    torch.manual_seed(0)
    shapes = [(128, 128)] * 5 + [(384, 128)] * 3 + [(128, 384)] * 2 + [(201, 96), (5, 3), (1, 4)]
    ref = [torch.randn(s, device=device) for s in shapes]
    ours = [p.clone() for p in ref]
    opt_ref = torch.optim.Muon(ref, lr=0.02, weight_decay=0.1)
    opt = DistributedMuon(ours, lr=0.02, weight_decay=0.1)
    steps = 4
    for _ in range(steps):
        for a, b in zip(ref, ours):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt_ref.step()
        opt.step()
    worst = max((a - b).abs().max().item() for a, b in zip(ref, ours))
    print(
        f"\nDistributedMuon vs torch.optim.Muon on {device}: max weight difference {worst:.3g} after {steps} steps"
    )
    # an update element is at most lr * sqrt(3) (the tallest matrix's adjusted lr) times ~1 (orthogonalised)
    assert worst <= steps * 0.02 * math.sqrt(3) * 4 * 2**-8

"""`train.fused_cross_entropy`: the chunked fused LM head + cross-entropy equals the plain logits path (values
and gradients, tied and untied heads, z-loss, ignored labels), leaves evaluation and the saved model plain,
refuses models that transform their logits, and trains to the same per-step losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError, StageError
from pretrain.modeling import build_model
from pretrain.testing import run_train_stage
from pretrain.train.fused_loss import (
    IGNORE_INDEX,
    FusedHead,
    chunk_tokens_for,
    fused_linear_cross_entropy,
)
from pretrain.train.metrics import step_losses
from pretrain.train.setup import build_fused_head
from pretrain.train.step import causal_lm_losses, forward_backward, fused_losses

VOCAB = 512


class _Tokenizer:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self) -> int:
        return VOCAB


def _recipe(tiny_recipe_path, tmp_path, *overrides):
    return load_recipe(
        tiny_recipe_path,
        overrides=["train.seq_len=32", "model.num_hidden_layers=2", *overrides],
        output_dir=str(tmp_path),
    )


def _model(tiny_recipe_path, tmp_path, *overrides):
    torch.manual_seed(0)
    return build_model(_recipe(tiny_recipe_path, tmp_path, *overrides), _Tokenizer())


def _batch(seed: int = 0, ignored: bool = False) -> dict[str, torch.Tensor]:
    x = torch.randint(0, VOCAB, (3, 33), generator=torch.Generator().manual_seed(seed))
    labels = x[:, 1:].clone()
    if ignored:
        labels[:, ::5] = IGNORE_INDEX
        labels[1, :] = IGNORE_INDEX  # a whole row ignored
    return {"input_ids": x[:, :-1], "labels": labels}


def _reference(hidden, weight, labels, z_coef):
    logits = F.linear(hidden, weight).float()
    counted = labels != IGNORE_INDEX
    ce = F.cross_entropy(logits, labels)
    z = (torch.logsumexp(logits, -1).pow(2) * counted).sum() / counted.sum()
    return ce + z_coef * z, ce, z


@pytest.mark.parametrize("z_coef", [0.0, 0.05], ids=["ce", "z-loss"])
@pytest.mark.parametrize("ignored", [False, True], ids=["all-labels", "ignored-labels"])
def test_fused_function_equals_cross_entropy_and_its_gradients(z_coef, ignored):
    g = torch.Generator().manual_seed(1)
    n, hdim, vocab = 150, 24, 700  # 150 tokens in chunks of 64: a short last chunk
    hidden = torch.randn(n, hdim, generator=g).requires_grad_()
    weight = (torch.randn(vocab, hdim, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, vocab, (n,), generator=g)
    if ignored:
        labels[::3] = IGNORE_INDEX
    objective, ce, z = fused_linear_cross_entropy(hidden, weight, labels, z_coef, chunk_tokens=64)
    assert not ce.requires_grad and not z.requires_grad
    (0.7 * objective).backward()  # a grad_output other than 1 (1/accum in the loop) scales the gradients
    got = hidden.grad, weight.grad
    hidden.grad = weight.grad = None
    ref_objective, ref_ce, ref_z = _reference(hidden, weight, labels, z_coef)
    (0.7 * ref_objective).backward()
    torch.testing.assert_close(objective, ref_objective.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(ce, ref_ce.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(z, ref_z.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(got[0], hidden.grad, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-8)


def test_every_label_ignored_gives_zero_loss_and_gradients():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(32, 8, requires_grad=True)
    objective, ce, z = fused_linear_cross_entropy(hidden, weight, torch.full((10,), IGNORE_INDEX), 0.1)
    objective.backward()
    assert objective.item() == ce.item() == z.item() == 0.0
    assert not hidden.grad.any() and not weight.grad.any()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("z_coef", [0.0, 1e-3], ids=["ce", "z-loss"])
def test_fused_losses_through_the_model_equal_causal_lm_losses(tied, z_coef, tiny_recipe_path, tmp_path):
    """Every parameter's gradient (the tied embedding's sums its two uses) equals the plain path's."""
    model = _model(tiny_recipe_path, tmp_path, f"model.tie_word_embeddings={str(tied).lower()}")
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    batch = _batch(ignored=True)
    ce, z = causal_lm_losses(model, batch)
    (ce + z_coef * z).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    head = FusedHead.install(model, chunk_tokens=40)
    objective, fused_ce, fused_z = fused_losses(model, batch, head, z_coef)
    objective.backward()
    torch.testing.assert_close(fused_ce, ce.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(fused_z, z.detach(), rtol=1e-6, atol=0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_fused_losses_under_bf16_autocast_stay_close_to_the_plain_path(tiny_recipe_path, tmp_path):
    model = _model(tiny_recipe_path, tmp_path)
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ce, _ = causal_lm_losses(model, batch)
    ce.backward()
    expected = model.lm_head.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    head = FusedHead.install(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        objective, fused_ce, _ = fused_losses(model, batch, head)
    objective.backward()
    assert fused_ce.dtype == torch.float32 and model.lm_head.weight.grad.dtype == torch.float32
    assert fused_ce.item() == pytest.approx(ce.item(), rel=2e-3)
    assert (model.lm_head.weight.grad - expected).norm() < 0.02 * expected.norm()


def test_forward_backward_with_the_fused_head_equals_the_plain_step(tiny_recipe_path, tmp_path):
    """Gradient accumulation over 2 micro batches, z-loss: same reported losses and gradients."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    model = _model(tiny_recipe_path, tmp_path)
    batches = [_batch(1), _batch(2)]
    loss, _, z = forward_backward(model, iter(batches), 2, acc, z_loss=1e-3)
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    head = FusedHead.install(model)
    fused_loss, _, fused_z = forward_backward(model, iter(batches), 2, acc, z_loss=1e-3, fused_head=head)
    torch.testing.assert_close(fused_loss, loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(fused_z, z, rtol=1e-6, atol=0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-7, msg=name)
    # the spike guard's faults still reach the reported loss and the gradients
    model.zero_grad(set_to_none=True)
    nan, _, _ = forward_backward(model, iter(batches), 2, acc, lambda x: x * float("nan"), fused_head=head)
    assert nan.isnan() and model.lm_head.weight.grad.isnan().all()


def test_the_head_stays_plain_for_evaluation_and_saving(tiny_recipe_path, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _model(tiny_recipe_path, tmp_path)
    ids = _batch()["input_ids"]
    before = model(input_ids=ids).logits
    keys = set(model.state_dict())
    head = FusedHead.install(model)
    assert type(model.lm_head) is torch.nn.Linear and set(model.state_dict()) == keys
    torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
    with head.bypassed():
        assert model(input_ids=ids).logits.shape == (*ids.shape, model.config.hidden_size)
    assert model(input_ids=ids).logits.shape[-1] == VOCAB  # back to logits after the block
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert type(reloaded.lm_head).forward is torch.nn.Linear.forward
    assert "forward" not in vars(reloaded.lm_head)
    torch.testing.assert_close(reloaded(input_ids=ids).logits, before, rtol=0, atol=0)
    assert model.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


def test_a_model_that_transforms_its_logits_is_refused(tiny_recipe_path, tmp_path):
    scaled = _model(
        tiny_recipe_path,
        tmp_path,
        "model={model_type: granite, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, "
        "num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64, logits_scaling: 4.0}",
    )
    with pytest.raises(ValueError, match="transforms the LM head's output"):
        FusedHead.install(scaled)
    assert "forward" not in vars(scaled.get_output_embeddings())  # refused: the head is left as it was
    from transformers import AutoModelForCausalLM, Gemma2Config

    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)
    config = Gemma2Config(vocab_size=VOCAB, num_key_value_heads=2, head_dim=32, **small)
    capped = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with pytest.raises(ValueError, match="soft-caps its logits"):
        FusedHead.install(capped)


def test_the_recipe_key_decides_where_it_runs(tiny_recipe_path, tmp_path):
    def head(device_type, sharded, *overrides):
        recipe = _recipe(tiny_recipe_path, tmp_path, *overrides)
        return build_fused_head(build_model(recipe, _Tokenizer()), recipe, device_type, sharded)

    assert isinstance(head("cpu", False), FusedHead)  # auto: on for CPU
    assert head("cuda", False) is None  # auto: off on GPUs (unmeasured there)
    assert head("cpu", True) is None  # auto: off under FSDP
    assert head("cpu", False, "train.fused_cross_entropy=false") is None
    assert isinstance(head("cuda", False, "train.fused_cross_entropy=true"), FusedHead)
    with pytest.raises(StageError, match="train.fused_cross_entropy: true needs the LM head.s whole weight"):
        head("cpu", True, "train.fused_cross_entropy=true")
    granite = (
        "model={model_type: granite, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, "
        "num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64, logits_scaling: 4.0}"
    )
    assert head("cpu", False, granite) is None  # auto falls back to the plain loss
    with pytest.raises(StageError, match="fused_cross_entropy: true, but the model transforms"):
        head("cpu", False, granite, "train.fused_cross_entropy=true")
    with pytest.raises(RecipeError, match="both replace the loss"):
        _recipe(tiny_recipe_path, tmp_path, "train.fused_cross_entropy=true", "train.liger_kernels=true")


def test_true_under_an_fsdp_launch_config_is_a_recipe_error(repo_root, tmp_path):
    recipe = repo_root / "recipes" / "llama-1b" / "config.yaml"  # launched with accelerate_configs/fsdp.yaml
    with pytest.raises(RecipeError, match="train.fused_cross_entropy: true needs the LM head.s whole weight"):
        load_recipe(
            recipe,
            overrides=["train.fused_cross_entropy=true"],
            output_dir=str(tmp_path),
            check_files=False,
        )


def test_chunks_follow_the_logits_budget():
    assert chunk_tokens_for(4096) == 512  # 8 MB of fp32 logits
    assert chunk_tokens_for(49_152) == 256  # floor: the matmuls want at least 256 rows
    assert chunk_tokens_for(1024, budget_bytes=4 * 2**20) == 1024


def test_training_losses_with_and_without_the_fused_loss_agree(fresh_run):
    """12 steps of the small run (vocab 512, Muon): per-step losses agree to fp32 rounding, which training
    compounds (measured: 1.9e-5 relative at most; a DDP run differs from one process by as much)."""
    short = ("eval.enabled=false", "train.tokens=6144", "train.validation.every_fraction=1.0")
    plain, plain_out = fresh_run("plain", *short, "train.fused_cross_entropy=false")
    fused, fused_out = fresh_run("fused", *short, "train.fused_cross_entropy=true")
    run_train_stage(plain)
    run_train_stage(fused)
    a, b = step_losses(plain_out / "metrics.jsonl"), step_losses(fused_out / "metrics.jsonl")
    assert len(a) == len(b) == 12
    assert [loss for _, loss in b] == pytest.approx([loss for _, loss in a], rel=5e-5)
    assert [loss for _, loss in b] != [loss for _, loss in a]  # not the same path twice


def test_validation_with_the_fused_head_equals_the_plain_pass(tiny_recipe_path, tmp_path):
    """The loop's validation uses the training's fused head (no full logits) and reports the same loss."""
    from pretrain.train.callbacks.validation import summed_val_loss

    model = _model(tiny_recipe_path, tmp_path).eval()
    batches = [_batch(seed) for seed in range(3)]
    plain_total, plain_n = summed_val_loss(model, batches, torch.device("cpu"))
    head = FusedHead.install(model, chunk_tokens=40)
    fused_total, fused_n = summed_val_loss(model, batches, torch.device("cpu"), fused_head=head)
    assert fused_n == plain_n == 3
    torch.testing.assert_close(fused_total, plain_total, rtol=1e-6, atol=0)
    assert all(p.grad is None for p in model.parameters())  # a forward only: no gradient was formed


def test_the_fused_loss_under_no_grad_computes_no_gradients():
    """Validation runs under no_grad, where a custom autograd Function still sees the head's weight as needing a
    gradient: the fused loss must not compute one (a matmul per chunk, for nothing)."""
    from torch.profiler import profile

    def matmuls(requires_grad: bool) -> int:
        hidden = torch.randn(64, 16, requires_grad=requires_grad)
        weight = torch.nn.Parameter(torch.randn(VOCAB, 16))
        labels = torch.randint(0, VOCAB, (64,))
        with profile() as prof, torch.set_grad_enabled(requires_grad):
            _, ce, _ = fused_linear_cross_entropy(hidden, weight, labels, chunk_tokens=16)
        torch.testing.assert_close(ce, F.cross_entropy(F.linear(hidden, weight), labels), rtol=1e-5, atol=0)
        return sum(e.count for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm_"))

    assert matmuls(False) == 4  # the head's forward, one per chunk, and nothing else
    assert matmuls(True) == 12  # and the gradients w.r.t. hidden and weight, per chunk

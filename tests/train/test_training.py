"""The training loop on CPU (fp32): exact resume, keep_last, spike guard, eval leaves the trajectory unchanged."""

from __future__ import annotations

import json
import shutil

import pytest

from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout
from pretrain.core.lock import RunLock
from pretrain.testing import copy_run_up_to, run_train_stage
from pretrain.tokens.manifest import TokenManifest
from pretrain.train.checkpoint import list_checkpoints
from pretrain.train.metrics import last_validation, read_records, source_val_bpb, step_losses


def _losses(out):
    return step_losses(out / "metrics.jsonl")


@pytest.fixture(scope="module")
def reference(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    recipe = make_run(out, "eval.enabled=false")
    run_train_stage(recipe, resume="never")
    return recipe, out


def test_trains_and_writes_hf_folders(reference):
    from transformers import AutoModelForCausalLM

    recipe, out = reference
    losses = _losses(out)
    assert len(losses) == 24 and losses[-1][1] < losses[0][1]
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.config.vocab_size == 512
    assert (out / "final" / "tokenizer.json").exists() and (out / "final" / "STAGE.json").exists()
    ckpts = list_checkpoints(out / "checkpoints")
    assert [c.name for c in ckpts] == ["step-0000008", "step-0000016", "step-0000024"]
    record = next(
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    )
    for key in (
        "lr",
        "grad_norm",
        "tokens_seen",
        "tokens_per_s",
        "step_time_s",
        "data_wait_s",
        "mem_gb",
        "eta_s",
    ):
        assert key in record
    assert any("val/bpb" in line for line in (out / "metrics.jsonl").read_text().splitlines())
    # each source's own val bits/byte beside the mixed one
    final = last_validation(read_records(out / "metrics.jsonl"))
    sources = [n for n, s in TokenManifest.read(out / "tokens").sources.items() if s.val_tokens]
    assert sources and sorted(source_val_bpb(final)) == sorted(sources)
    assert all(0.5 < bpb < 10 for bpb in source_val_bpb(final).values())


def test_resume_reproduces_losses_exactly(reference, fresh_run):
    _, ref_out = reference
    recipe, out = fresh_run("run", "eval.enabled=false")
    copy_run_up_to(ref_out, out, 8)
    run_train_stage(recipe, resume="auto")
    assert _losses(out) == _losses(ref_out)


def test_resume_from_past_the_end_is_an_error(reference, fresh_run):
    _, ref_out = reference
    recipe, out = fresh_run("run", "eval.enabled=false", "train.tokens=2048")
    shutil.copytree(ref_out / "checkpoints" / "step-0000008", out / "checkpoints" / "step-0000008")
    with pytest.raises(
        PretrainError, match=r"step-0000008: this checkpoint is at step 8, past .* end at step 4"
    ) as failed:
        run_train_stage(recipe, resume="auto")
    assert not (out / "final").exists()
    # a failed restore frees the output_dir itself (`failed` keeps the trainer's frames, so its lock, alive)
    after = RunLock(RunLayout(out).lock)
    after.acquire()
    after.release()
    del failed


def test_keep_last(fresh_run):
    recipe, out = fresh_run(
        "run",
        "eval.enabled=false",
        "train.checkpoint.every_steps=4",
        "train.checkpoint.keep_last=2",
        "train.tokens=8192",
    )
    run_train_stage(recipe, resume="never")
    assert [c.name for c in list_checkpoints(out / "checkpoints")] == ["step-0000012", "step-0000016"]


def test_eval_does_not_change_the_trajectory(reference, fresh_run):
    _, ref_out = reference
    recipe, out = fresh_run("run", "eval.enabled=true", "eval.every_fraction=0.25")
    run_train_stage(recipe, resume="never")
    assert _losses(out) == _losses(ref_out)
    assert len(list((out / "evals").glob("step-*.json"))) == 4


def test_spike_guard_skips_and_rolls_back(fresh_run):
    recipe, out = fresh_run(
        "run",
        "eval.enabled=false",
        "train.stability.min_history=3",
        "train.stability.spikes_before_rollback=2",
        "train.stability.zscore=4",
        "train.fault_injection.nan_at=[6]",
        "train.fault_injection.spike_at=[12,13]",
    )
    run_train_stage(recipe, resume="never")
    events = [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"event"' in line
    ]
    skips = [e for e in events if e["event"] == "skip"]
    assert [e["reason"] for e in skips][0] == "non_finite"
    assert any(e["reason"].startswith("spike") for e in skips)
    rollbacks = [e for e in events if e["event"] == "rollback"]
    assert rollbacks and rollbacks[0]["from_step"] == 13 and rollbacks[0]["to"].endswith("step-0000008")
    assert (out / "final" / "model.safetensors").exists()


def test_rollbacks_are_bounded(fresh_run):
    recipe, out = fresh_run(
        "run",
        "eval.enabled=false",
        "train.stability.min_history=3",
        "train.stability.spikes_before_rollback=1",
        "train.stability.max_rollbacks=1",
        "train.fault_injection.nan_at=[10,11,12]",
    )
    with pytest.raises(PretrainError, match="rollbacks were already used"):
        run_train_stage(recipe, resume="never")


def test_second_run_on_same_output_dir_refuses(fresh_run):
    recipe, out = fresh_run("run", "eval.enabled=false")
    holder = RunLock(RunLayout(out).lock)
    holder.acquire()
    try:
        with pytest.raises(PretrainError, match="another run .* is using this output_dir"):
            run_train_stage(recipe, resume="never")
    finally:
        holder.release()


def test_grad_accumulation_equivalence(fresh_run):
    """micro batch 4 x accum 2 == micro batch 8 x accum 1 on the same global batches (fp32 tolerance)."""
    ra, a = fresh_run("a", "eval.enabled=false", "train.tokens=4096")
    rb, b = fresh_run("b", "eval.enabled=false", "train.tokens=4096", "train.micro_batch_size=8")
    run_train_stage(ra, resume="never")
    run_train_stage(rb, resume="never")
    for (sa, la), (sb, lb) in zip(_losses(a), _losses(b)):
        assert sa == sb and la == pytest.approx(lb, rel=1e-4)


def test_spike_guard_watches_the_gradient_norm(fresh_run):
    """A gradient-norm spike with an ordinary loss is skipped (reason grad_norm_spike); with
    train.stability.grad_norm_zscore=null the same update is applied."""
    overrides = (
        "eval.enabled=false",
        "train.stability.min_history=5",
        "train.stability.window=10",
        "train.fault_injection.grad_spike_at=[18]",
    )
    recipe, out = fresh_run("watched", *overrides)
    run_train_stage(recipe, resume="never")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    skips = [r for r in records if r.get("event") == "skip"]
    assert [(s["step"], s["reason"].split("(")[0]) for s in skips] == [(18, "grad_norm_spike")]
    steps = {r["step"]: r for r in records if "loss" in r and "event" not in r}
    assert steps[18]["loss"] < max(steps[s]["loss"] for s in range(10, 18)) + 0.5  # the loss shows nothing
    assert steps[18]["grad_norm"] > 10 * steps[17]["grad_norm"]

    unwatched, out2 = fresh_run("unwatched", *overrides, "train.stability.grad_norm_zscore=null")
    run_train_stage(unwatched, resume="never")
    assert '"skip"' not in (out2 / "metrics.jsonl").read_text()

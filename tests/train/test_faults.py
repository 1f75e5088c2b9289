"""Faults during training: a crash or a full disk mid-checkpoint leaves the previous checkpoint as the one resumed."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil

import pytest

from pretrain.commands.push import push
from pretrain.commands.run import run_stage
from pretrain.commands.stages import is_current
from pretrain.core.errors import PretrainError
from pretrain.testing import copy_run_up_to, run_train_stage
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import step_losses


@pytest.fixture()
def run(fresh_run):
    return fresh_run("run", "eval.enabled=false", "train.checkpoint.every_steps=4", "train.tokens=6144")


def _failing_write(monkeypatch, at_step: int, error: BaseException):
    real = ckpt.write_main_state

    def write(tmp, state, recipe_yaml):
        if state["step"] == at_step:
            (tmp / "trainer_state" / "state.json").write_text("{")  # half a file on disk, then the failure
            raise error
        return real(tmp, state, recipe_yaml)

    monkeypatch.setattr(ckpt, "write_main_state", write)


def test_full_disk_mid_checkpoint(run, monkeypatch):
    recipe, out = run
    _failing_write(monkeypatch, 8, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(PretrainError, match=r"No space left on device.*step-0000004 is intact"):
        run_train_stage(recipe, resume="never")
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step-0000004"]
    assert not list((out / "checkpoints").glob(".step-*"))
    monkeypatch.undo()
    run_train_stage(recipe, resume="auto")  # resumes from step 4 and finishes
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert steps == list(range(1, 13))


def test_crash_mid_checkpoint_is_never_resumed_from(run, monkeypatch):
    recipe, out = run
    _failing_write(monkeypatch, 8, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_train_stage(recipe, resume="never")
    # a kill at this point would leave the temp folder; it must not count as a checkpoint
    partial = out / "checkpoints" / ".step-0000008.tmp-manual"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"garbage")
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step-0000004"]


def test_incomplete_folder_without_marker_is_skipped(run):
    recipe, out = run
    run_train_stage(recipe, resume="never")
    newest = ckpt.list_checkpoints(out / "checkpoints")[-1]
    (newest / "trainer_state" / "COMPLETE").unlink()
    assert newest not in ckpt.list_checkpoints(out / "checkpoints")


def test_token_never_written(run, monkeypatch, tmp_path):
    recipe, out = run
    token = "hf_FAKEtoken1234567890abcdefghijklmnop"
    monkeypatch.setenv("HF_TOKEN", token)
    run_train_stage(recipe, resume="never")
    from pretrain.commands.card import write_model_card
    from pretrain.evaluation.report import summarize_run

    summarize_run(out)
    write_model_card(recipe, out / "final")
    for path in out.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------- damaged checkpoints and final/ (content checks)
DAMAGE_RUN = ("eval.enabled=false", "train.checkpoint.every_steps=4", "train.tokens=6144")


@pytest.fixture(scope="module")
def reference(make_run, tmp_path_factory):
    """A finished 12-step run with checkpoints at steps 4, 8 and 12."""
    out = tmp_path_factory.mktemp("damage") / "ref"
    run_train_stage(make_run(out, *DAMAGE_RUN), resume="never")
    return out


def _reference_and_copy(reference, fresh_run):
    """The reference run and a copy of it stopped after step 8 (its checkpoints and metrics up to step 8)."""
    recipe, out = fresh_run("damaged", *DAMAGE_RUN)
    copy_run_up_to(reference, out, 4)
    copy_run_up_to(reference, out, 8)
    return reference, recipe, out


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            lambda c: (c / "trainer_state" / "optimizer" / "__0_0.distcp").unlink(),
            "trainer_state/optimizer/__0_0.distcp: missing",
        ),
        (lambda c: os.truncate(c / "model.safetensors", 1000), "model.safetensors: 1000 bytes"),
        (lambda c: (c / "trainer_state" / "state.json").write_text("{"), "trainer_state/state.json: 1 bytes"),
    ],
    ids=["optimizer-missing", "weights-truncated", "state-corrupt"],
)
def test_a_damaged_newest_checkpoint_is_passed_over_with_one_warning(
    reference, fresh_run, caplog, damage, named
):
    """It used to resume with a fresh optimizer (exit 0, no word) or die in a traceback: now resume takes the
    previous intact checkpoint, says what was wrong once, and the losses are those of an uninterrupted run."""
    ref_out, recipe, out = _reference_and_copy(reference, fresh_run)
    damage(out / "checkpoints" / "step-0000008")
    with caplog.at_level(logging.WARNING, logger="pretrain.train"):
        run_train_stage(recipe, resume="auto")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and named in warnings[0] and "resuming from step-0000004" in warnings[0], (
        warnings
    )
    assert step_losses(out / "metrics.jsonl") == step_losses(ref_out / "metrics.jsonl")


def test_only_damaged_checkpoints_is_one_error_not_a_fresh_start(reference, fresh_run):
    _, recipe, out = _reference_and_copy(reference, fresh_run)
    for step in (4, 8):
        (out / "checkpoints" / f"step-{step:07d}" / "model.safetensors").unlink()
    with pytest.raises(
        PretrainError, match=r"no intact checkpoint to resume from: step-0000008 \(model.safetensors"
    ):
        run_train_stage(recipe, resume="auto")
    named = out / "checkpoints" / "step-0000008"
    with pytest.raises(PretrainError, match="not an intact checkpoint"):
        run_train_stage(recipe, resume=str(named))


def test_a_damaged_final_is_rebuilt_by_run_and_refused_by_push(fresh_run, tmp_path, caplog):
    recipe, out = fresh_run(
        "final", "eval.enabled=false", "train.checkpoint.every_steps=4", "train.tokens=4096"
    )
    run_stage(recipe, "train")
    weights = out / "final" / "model.safetensors"
    intact = weights.read_bytes()
    os.truncate(weights, len(intact) // 2)
    assert not is_current(recipe, "train")
    with pytest.raises(
        PretrainError, match=r"damaged, not pushed: model.safetensors: \d+ bytes, \d+ when written"
    ):
        push(out / "final", repo_id="me/x", dry_run=tmp_path / "upload")
    assert not (tmp_path / "upload").exists()
    with caplog.at_level(logging.WARNING):
        run_stage(recipe, "train")
    assert any("is damaged (model.safetensors" in r.getMessage() for r in caplog.records)
    assert weights.read_bytes() == intact  # retrained from its checkpoints: the same weights
    assert is_current(recipe, "train")


def test_a_checkpoint_sealed_before_manifests_is_checked_for_what_its_state_says_it_holds(
    reference, tmp_path
):
    folder = tmp_path / "step-0000004"
    shutil.copytree(reference / "checkpoints" / "step-0000004", folder)
    (folder / "trainer_state" / "COMPLETE").write_text("ok\n")  # the marker of earlier versions
    assert ckpt.damage(folder) == []
    shutil.rmtree(folder / "trainer_state" / "optimizer")
    assert ckpt.damage(folder) == ["trainer_state/optimizer: missing (the recipe saved the optimizer)"]
    (folder / "trainer_state" / "rank-00000.json").unlink()
    assert "trainer_state/rank-00000.json: missing" in ckpt.damage(folder)

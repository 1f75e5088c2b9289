"""Faults during training: a crash or a full disk mid-checkpoint leaves the previous checkpoint as the one resumed."""

from __future__ import annotations

import errno
import json

import pytest

from pretrain.core.errors import PretrainError
from pretrain.testing import run_train_stage
from pretrain.train import checkpoint as ckpt


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

"""`pretrain anneal CKPT`: a WSD decay branched from a stable checkpoint, on a new mix, through the CLI."""

from __future__ import annotations

import json

import pytest

from pretrain.cli import main
from pretrain.testing import run_train_stage
from pretrain.train.metrics import EVENT_DATA_STAGE, read_records, step_records

# SMALL_RUN: 24 steps of 512 tokens, checkpoints every 8, WSD decaying over the last 20% (steps 19-23)
BRANCH = "step-0000016"


@pytest.fixture(scope="module")
def stable(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("stable") / "run"
    recipe = make_run(out, "eval.enabled=false")
    run_train_stage(recipe, resume="never")
    return recipe, out


def _anneal(ckpt, out, *extra: str) -> int:
    return main(["anneal", str(ckpt), "--output-dir", str(out), "--set", "eval.enabled=false", *extra])


def test_anneal_branches_a_decay_on_the_new_mix(stable, tmp_path, capsys):
    recipe, src = stable
    out = tmp_path / "anneal"
    code = _anneal(
        src / "checkpoints" / BRANCH,
        out,
        "--steps",
        "4",
        "--weight",
        "stdlib_docs=3",
        "--weight",
        "pydoc_topics=1",
    )
    assert code == 0, capsys.readouterr().err
    assert "anneal: " in capsys.readouterr().out
    parent = step_records(read_records(src / "metrics.jsonl"))
    steps = step_records(read_records(out / "metrics.jsonl"))
    assert [r["step"] for r in steps] == [17, 18, 19, 20]
    assert steps[0]["tokens_seen"] == 17 * 512
    peak = parent[10]["lr"]  # a plateau step of the stable run
    assert [round(r["lr"] / peak, 6) for r in steps] == [
        0.75,
        0.5,
        0.25,
        0.0,
    ]  # from the checkpoint's lr to 0
    # the weights (and optimizer) came from the checkpoint: the first loss is the stable run's level, far
    # below where a random init starts
    assert abs(steps[0]["loss"] - parent[16]["loss"]) < 0.3
    assert steps[0]["loss"] < parent[0]["loss"] - 0.7
    (event,) = [r for r in read_records(out / "metrics.jsonl") if r.get("event") == EVENT_DATA_STAGE]
    assert event["stage"] == "anneal" and event["tokens"] == 4 * 512
    assert event["realised"] == {"stdlib_docs": 0.75, "pydoc_topics": 0.25}
    assert (out / "tokens").is_symlink() and (out / "final" / "model.safetensors").exists()
    assert "### Data stages" in (out / "final" / "README.md").read_text()
    summary = json.loads((out / "final" / "STAGE.json").read_text())["summary"]
    assert summary["steps"] == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--steps", "4", "--weight", "books=1"],
            "train.data_stages.1.weights.books: no source named 'books'",
        ),
        (["--steps", "4", "--weight", "stdlib_docs=0"], "--weight stdlib_docs=0: the weight must be > 0"),
        (["--steps", "4"], "give the anneal mix as --weight SOURCE=WEIGHT"),
        (["--tokens", "1000", "--weight", "stdlib_docs=1"], "--tokens 1000 is not a positive multiple"),
    ],
)
def test_bad_anneal_input_is_one_error_line_before_any_work(stable, tmp_path, capsys, args, message):
    _, src = stable
    out = tmp_path / "anneal"
    assert _anneal(src / "checkpoints" / BRANCH, out, *args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "metrics.jsonl").exists()


def test_anneal_from_an_incomplete_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "step-0000008").mkdir()
    assert _anneal(tmp_path / "step-0000008", tmp_path / "anneal", "--steps", "2", "--weight", "a=1") == 1
    assert "not a complete checkpoint" in capsys.readouterr().err

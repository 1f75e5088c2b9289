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
    # the level check below (the anneal's first loss, on the new mix, within 0.3 of the stable run's) was set
    # at these learning rates; the tiny recipe's own (AdamW 6e-3, Muon 0.01) are tuned for its 400 steps
    recipe = make_run(out, "eval.enabled=false", "train.optimizer.lr=0.003", "train.optimizer.muon.lr=0.02")
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
    # what libraries print while the anneal trains goes to its log, not the console (case 10 of issue #31)
    assert "branched from" in (out / "pretrain.log").read_text()


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
    assert "not an intact checkpoint" in capsys.readouterr().err


def _fake_checkpoint(folder, recipe_path, step: int, total: int):
    """A checkpoint folder as far as `anneal_recipe` reads it: the resolved recipe, state.json, COMPLETE."""
    from pretrain.config import load_recipe
    from pretrain.train import checkpoint as ckpt

    ts = folder / ckpt.TRAINER_STATE
    ts.mkdir(parents=True)
    (ts / ckpt.RECIPE_YAML).write_text(ckpt.resolved_recipe_yaml(load_recipe(recipe_path)))
    (ts / ckpt.STATE_JSON).write_text(json.dumps({"step": step, "total_steps": total}))
    (folder / ckpt.WEIGHTS).write_bytes(b"")
    ckpt.seal_checkpoint(folder)
    return folder


def test_a_mid_decay_checkpoint_decays_from_its_own_lr(tiny_recipe_path, tmp_path):
    from pretrain.commands.anneal import anneal_recipe
    from pretrain.train.schedules import lr_multiplier

    # tiny: 200 steps, WSD decaying over the last 60; step 170 is half-way down
    ckpt = _fake_checkpoint(tmp_path / "run" / "checkpoints" / "step-0000170", tiny_recipe_path, 170, 200)
    parent, recipe = anneal_recipe(ckpt, tmp_path / "anneal", {"stdlib_docs": 1.0}, steps=30)
    scale = 1 - 31 / 60
    assert recipe.train.steps == 200 and recipe.train.stage_end_steps(200) == [170, 200]
    assert recipe.train.optimizer.lr == pytest.approx(parent.train.optimizer.lr * scale)
    assert recipe.train.optimizer.muon.lr == pytest.approx(parent.train.optimizer.muon.lr * scale)
    # the anneal's lr at its first step continues the parent's decay path from the checkpoint's lr
    sched = recipe.train.schedule
    first = recipe.train.optimizer.lr * lr_multiplier(170, 200, sched)
    assert first < parent.train.optimizer.lr * scale and lr_multiplier(199, 200, sched) == 0.0
    assert [s.name for s in recipe.train.data_stages] == ["before-step-170", "anneal"]
    assert recipe.out == (tmp_path / "anneal").absolute()


def test_a_checkpoint_inside_the_warmup_is_refused(tiny_recipe_path, tmp_path):
    from pretrain.commands.anneal import AnnealError, anneal_recipe

    ckpt = _fake_checkpoint(tmp_path / "run" / "checkpoints" / "step-0000005", tiny_recipe_path, 5, 200)
    with pytest.raises(AnnealError, match="inside the run's warmup"):
        anneal_recipe(ckpt, tmp_path / "anneal", {"stdlib_docs": 1.0}, steps=30)


def test_the_anneal_takes_the_checkpoints_rng_streams(stable, tmp_path, monkeypatch):
    from pretrain.train import checkpointer

    _, src = stable
    restored = []
    real = checkpointer.set_rng_state
    monkeypatch.setattr(checkpointer, "set_rng_state", lambda state: (restored.append(state), real(state)))
    assert (
        _anneal(
            src / "checkpoints" / BRANCH, tmp_path / "anneal", "--steps", "2", "--weight", "stdlib_docs=1"
        )
        == 0
    )
    saved = json.loads((src / "checkpoints" / BRANCH / "trainer_state" / "rank-00000.json").read_text())
    assert restored == [saved["rng"]]


def test_anneal_relaunches_under_its_launch_config(stable, tmp_path, repo_root, monkeypatch):
    """`--set accelerate_config=` with more than one process: the anneal re-executes itself under accelerate,
    as `pretrain train` does (`--no-relaunch` runs it here)."""
    from pretrain.commands import launch as launch_module
    from pretrain.core.launcher import LAUNCHER_VARIABLES, RELAUNCHED

    for name in (*LAUNCHER_VARIABLES, RELAUNCHED):
        monkeypatch.delenv(name, raising=False)
    _, src = stable
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    ckpt, out = src / "checkpoints" / BRANCH, tmp_path / "anneal"
    args = ["anneal", str(ckpt), "--output-dir", str(out), "--steps", "2", "--weight", "stdlib_docs=1"]
    launched = []

    def relaunch(launch):
        launched.append(launch)
        raise SystemExit(0)  # the real one replaces the process

    monkeypatch.setattr(launch_module, "relaunch", relaunch)
    with pytest.raises(SystemExit):
        main([*args, "--set", f"accelerate_config={config}", "--num-processes", "2"])
    (launch,) = launched
    assert launch.shown.startswith(
        f"accelerate launch --config_file {config} --num_processes 2 -m pretrain anneal {ckpt}"
    )
    assert (
        launch.max_restarts == 3
    )  # restarts are the supervising process's (core/supervisor.py), not torchrun's
    assert "--num-processes" not in launch.argv
    assert main([*args, "--set", "eval.enabled=false", "--no-relaunch"]) == 0 and len(launched) == 1


@pytest.mark.slow
def test_anneal_trains_on_two_relaunched_cpu_ranks(stable, tmp_path, repo_root):
    import os
    import subprocess
    import sys

    _, src = stable
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "anneal"
    cmd = [
        sys.executable,
        "-m",
        "pretrain",
        "anneal",
        str(src / "checkpoints" / BRANCH),
        "--output-dir",
        str(out),
    ]
    cmd += ["--steps", "4", "--weight", "stdlib_docs=1", "--set", "eval.enabled=false"]
    proc = subprocess.run(
        [*cmd, "--set", f"accelerate_config={config}"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"accelerate launch --config_file {config} --max_restarts 3 -m pretrain anneal" in proc.stdout
    records = read_records(out / "metrics.jsonl")
    assert next(r for r in records if r.get("event") == "start")["world_size"] == 2
    assert [r["step"] for r in step_records(records)] == [17, 18, 19, 20]

"""`pretrain preflight`: the four first-contact failures of issue #31, each caught before any work with one ✗
line naming its fix, and the shipped recipes passing where their hardware is.

1. smollm2-135m on a machine without a GPU (was: relaunched as 8 ranks, a data error retried 3 times);
2. a finished run asked for more steps (was: the lr jumped from 0 back to the peak, final/ replaced);
3. a changed tokenizer over a folder with checkpoints (was: re-trained, re-packed, then a raw size mismatch);
4. an unknown eval task and a tracker whose package is missing (was: `validate` said ok, the run failed late).
"""

from __future__ import annotations

import json
import time

import pytest

from pretrain.cli import main
from pretrain.commands.preflight import stages_verdict
from pretrain.commands.stages import StagePlan
from pretrain.evaluation import task_names
from pretrain.testing import write_checkpoint


def _preflight(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["preflight", *args])
    return code, capsys.readouterr().out.splitlines()


def _failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗ ")]


@pytest.fixture()
def no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def task_index(monkeypatch, tmp_path):
    """lm-eval's task-name index as the cache holds it (the real index: test_the_real_lm_eval_index)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = task_names.index_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(["hellaswag", "arc_easy", "lambada_openai"]))


def test_case1_gpu_recipe_on_a_machine_without_gpu(capsys, no_gpu, repo_root, tmp_path):
    start = time.monotonic()
    code, lines = _preflight(
        capsys, str(repo_root / "recipes/smollm2-135m/config.yaml"), "--output-dir", str(tmp_path)
    )
    assert time.monotonic() - start < 60
    assert code == 1
    (launch,) = [line for line in _failed(lines) if line.startswith("✗ launch: ")]
    assert "asks for 8 GPU process(es)" in launch and "has no GPU" in launch
    assert "--set accelerate_config=" in launch and "cpu.yaml" in launch


def test_case2_finished_run_asked_for_more_steps(capsys, make_run, small_run_overrides, tmp_path, task_index):
    out = tmp_path / "run"
    finished = make_run(out, "train.tokens=20480")
    write_checkpoint(finished, 40, 40)
    code, lines = _preflight(
        capsys,
        str(finished.path),
        "--output-dir",
        str(out),
        *small_run_overrides,
        "--set",
        "train.tokens=30720",
    )
    assert code == 1
    (folder,) = _failed(lines)
    assert folder.startswith("✗ run folder: ") and "pretrain anneal" in folder and "decayed to 0%" in folder


def test_case3_changed_tokenizer_over_checkpoints(
    capsys, make_run, small_run_overrides, tmp_path, task_index
):
    out = tmp_path / "run"
    recipe = make_run(out, "train.tokens=20480")
    write_checkpoint(recipe, 20, 40)
    marker = (out / "tokenizer" / "STAGE.json").read_text()
    args = [
        str(recipe.path),
        "--output-dir",
        str(out),
        *small_run_overrides,
        "--set",
        "tokenizer.vocab_size=256",
    ]
    code, lines = _preflight(capsys, *args)
    assert code == 1
    (folder,) = _failed(lines)
    assert "tokenizer/ would be rebuilt (tokenizer.vocab_size: 512 -> 256)" in folder
    # `pretrain run` runs the same checks first: refused before any data is touched
    assert main(["run", *args]) == 1
    assert "✗ run folder: tokenizer/ would be rebuilt" in capsys.readouterr().err
    assert (out / "tokenizer" / "STAGE.json").read_text() == marker
    # without the preflight too: the tokenizer stage refuses (it re-trained, re-packed, then a load traceback)
    for command in (["run", *args, "--no-preflight"], ["tokenizer", *args]):
        assert main(command) == 1
        assert (
            "error: tokenizer/ would be rebuilt (tokenizer.vocab_size: 512 -> 256)" in capsys.readouterr().err
        )
        assert (out / "tokenizer" / "STAGE.json").read_text() == marker


def test_case4_unknown_eval_task_and_missing_tracker(
    capsys, make_run, small_run_overrides, tmp_path, task_index, monkeypatch
):
    from pretrain.train import trackers

    monkeypatch.setitem(trackers.TRACKER_MODULES, "wandb", "no_such_tracker_package")
    out = tmp_path / "run"
    recipe = make_run(out)
    sets = ["--set", "eval.tasks=[hellaswagg]", "--set", "train.trackers=[wandb]"]
    code, lines = _preflight(capsys, str(recipe.path), "--output-dir", str(out), *small_run_overrides, *sets)
    assert code == 1
    tracker, tasks = _failed(lines)
    assert tracker.startswith("✗ trackers: ") and "pip install no_such_tracker_package" in tracker
    assert (
        tasks.startswith("✗ eval tasks: ") and "'hellaswagg'" in tasks and "did you mean 'hellaswag'" in tasks
    )


def test_shipped_recipes_pass_where_their_hardware_is(capsys, repo_root, tmp_path, task_index):
    """tiny (CPU) passes here; the GPU recipes fail only on what this machine lacks (no GPU, no Hub)."""
    code, lines = _preflight(
        capsys, str(repo_root / "recipes/tiny/config.yaml"), "--output-dir", str(tmp_path / "t")
    )
    assert code == 0, lines
    assert lines[-1].startswith("preflight: all ") and not _failed(lines)


def test_the_stages_line_says_which_stages_run_and_why():
    plans = [
        StagePlan("curate", "current", ""),
        StagePlan("tokenizer", "stale", "tokenizer.vocab_size changed"),
    ]
    assert stages_verdict(plans, force=False).line() == (
        "✓ stages: curate current; tokenizer runs (tokenizer.vocab_size changed)"
    )
    assert stages_verdict(plans, force=True).line() == "✓ stages: every stage re-runs (--force)"


@pytest.mark.slow
def test_the_real_lm_eval_index(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    unknown = task_names.unknown_tasks(["hellaswagg", "arc_easy", "val_bpb", "mine"], local=["mine"])
    assert unknown == {"hellaswagg": "hellaswag"}
    assert task_names.index_path().exists()  # the second check reads it back

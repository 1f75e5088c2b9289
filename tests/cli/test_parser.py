"""CLI contract: every command exists, takes --set and --output-dir, and user errors exit 1 without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pretrain.cli.parser import build_parser

COMMANDS = ["validate", "plan", "explain", "curate", "tokenizer", "pack", "train", "eval", "push", "run"]


def _sub(name):
    parser = build_parser()
    action = next(a for a in parser._actions if getattr(a, "choices", None) and name in a.choices)
    return action.choices[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_set_and_output_dir(name):
    options = {opt for a in _sub(name)._actions for opt in a.option_strings}
    assert {"--set", "--output-dir"} <= options


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pretrain", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_stage_out_of_order_is_a_clear_error(tiny_recipe_path, tmp_path):
    proc = _cli("pack", str(tiny_recipe_path), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "missing (run `pretrain" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_recipe_file(tmp_path):
    proc = _cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 1 and "file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_override(tiny_recipe_path):
    proc = _cli("plan", str(tiny_recipe_path), "--set", "train.seq_len=-3")
    assert proc.returncode == 1
    assert "train.seq_len" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_and_push_on_missing_checkpoint(tmp_path):
    for cmd in (
        ["eval", str(tmp_path / "none")],
        ["push", str(tmp_path / "none"), "--dry-run", str(tmp_path / "d")],
    ):
        proc = _cli(*cmd)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_output_into_a_closed_pipe_is_not_a_traceback(tiny_recipe_path):
    """`pretrain plan R | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    proc = subprocess.run(
        f"{sys.executable} -m pretrain explain | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_version(capsys):
    """Case 10 of issue #31: `pretrain --version` was an error."""
    import pytest

    from pretrain import __version__
    from pretrain.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert (
        exit_.value.code == 0
        and capsys.readouterr().out.strip() == f"pretrain (pretraining-handbook) {__version__}"
    )

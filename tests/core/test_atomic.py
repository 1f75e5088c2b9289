"""core/atomic.py: a stage folder appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.config import load_recipe
from pretrain.core.atomic import atomic_dir, remove_dead_attempts


@pytest.fixture()
def recipe(tiny_recipe_path, tmp_path):
    return load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "run"))


def test_atomic_dir_leaves_nothing_on_failure(recipe):
    out = recipe.layout.tokenizer
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("crash mid-write")
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tokenizer")]


def test_atomic_dir_replaces_previous_output(recipe):
    out = recipe.layout.tokens
    for i in range(2):
        with atomic_dir(out) as tmp:
            (tmp / "v").write_text(str(i))
    assert (out / "v").read_text() == "1"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokens"]


ATTEMPT = """
import os, sys, time
from pathlib import Path
from pretrain.core.atomic import atomic_dir
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "part").write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(120)
"""


def _start_attempt(final):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", ATTEMPT, str(final)], stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_attempts_folder_is_removed_by_the_next_and_a_live_ones_is_kept(tmp_path):
    """kill -9 skips every clean-up: the dead attempt's folder (the size of the output) used to stay for ever."""
    final = tmp_path / "mix"
    dead, dead_tmp = _start_attempt(final)
    live, live_tmp = _start_attempt(final)
    try:
        dead.kill()
        dead.wait()
        assert dead_tmp.is_dir() and live_tmp.is_dir()
        with atomic_dir(final) as tmp:
            (tmp / "v").write_text("1")
        assert not dead_tmp.exists(), "the dead attempt's folder is left"
        assert live_tmp.is_dir(), "a live attempt's folder was deleted under it"
        assert remove_dead_attempts(final) == []
    finally:
        live.kill()
        live.wait()
    assert remove_dead_attempts(final) == [live_tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix"]

"""core/atomic.py: a stage folder appears whole or not at all."""

from __future__ import annotations

import pytest

from pretrain.config import load_recipe
from pretrain.core.atomic import atomic_dir


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

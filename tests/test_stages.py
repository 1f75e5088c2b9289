"""Stage bookkeeping: fingerprints follow exactly the inputs a stage reads; outputs appear atomically."""

from __future__ import annotations

import pytest

from pretrain.config import load_recipe
from pretrain.core.atomic import atomic_dir
from pretrain.core.errors import StageError
from pretrain.core.markers import read_marker
from pretrain.stages import fingerprint, is_current, require_current, stage_output, stage_path


@pytest.fixture()
def recipe(tiny_recipe_path, tmp_path):
    return load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "run"))


def _with(tiny_recipe_path, tmp_path, *overrides):
    return load_recipe(tiny_recipe_path, overrides=list(overrides), output_dir=str(tmp_path / "run"))


def test_changes_rerun_exactly_the_affected_stages(tiny_recipe_path, tmp_path):
    base = _with(tiny_recipe_path, tmp_path)
    cases = {
        "train.optimizer.lr=0.001": {"train"},
        "tokenizer.vocab_size=2048": {"tokenizer", "pack", "train"},
        "data.sources.0.weight=0.7": {"curate", "tokenizer", "pack", "train"},
        "model.num_hidden_layers=2": {"train"},
        "eval.limit=5": {"train"},
        "hub.private=false": set(),
        "data.val_fraction=0.05": {"pack", "train"},
        "data.workers=1": set(),
    }
    for override, expected in cases.items():
        changed = _with(tiny_recipe_path, tmp_path, override)
        stale = {
            s
            for s in ("curate", "tokenizer", "pack", "train")
            if fingerprint(base, s) != fingerprint(changed, s)
        }
        assert stale == expected, override


def test_local_file_change_invalidates_curation(tiny_recipe_path, tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text("hello world\n" * 10)
    over = [
        f'data.sources=[{{name: mine, type: local, paths: ["{data}"], weight: 1.0}}]',
    ]
    a = _with(tiny_recipe_path, tmp_path, *over)
    fp = fingerprint(a, "curate")
    data.write_text("changed text\n" * 11)
    assert fingerprint(_with(tiny_recipe_path, tmp_path, *over), "curate") != fp


def test_marker_and_require_current(recipe):
    out = stage_path(recipe, "curate")
    with pytest.raises(StageError, match="run `pretrain curate"):
        require_current(recipe, "curate", needed_by="pretrain tokenizer")
    summary = stage_output(recipe, "curate").publish(
        lambda tmp: (tmp / "part-00000.jsonl").write_text("{}\n") and {"docs": 1}
    )
    assert is_current(recipe, "curate")
    assert read_marker(out)["summary"] == summary and summary["docs"] == 1
    assert require_current(recipe, "curate", needed_by="x") == out


def test_atomic_dir_leaves_nothing_on_failure(recipe):
    out = stage_path(recipe, "tokenizer")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("crash mid-write")
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tokenizer")]


def test_atomic_dir_replaces_previous_output(recipe):
    out = stage_path(recipe, "pack")
    for i in range(2):
        with atomic_dir(out) as tmp:
            (tmp / "v").write_text(str(i))
    assert (out / "v").read_text() == "1"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokens"]

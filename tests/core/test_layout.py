"""core/layout.py: the run folder's entries, named once, and the checkpoint / eval-record names."""

from __future__ import annotations

from pathlib import Path

from pretrain.commands.runs import run_dir_of
from pretrain.core.layout import RunLayout, step_name


def test_entries_are_under_the_root_and_distinct():
    layout = RunLayout(Path("/runs/x"))
    names = [n for n in dir(RunLayout) if isinstance(getattr(RunLayout, n), property)]
    paths = [getattr(layout, n) for n in names]
    assert all(p.is_relative_to(layout.root) for p in paths)
    assert len(set(paths)) == len(paths), "two entries share a path"


def test_checkpoint_and_eval_record_names_sort_by_step():
    layout = RunLayout(Path("/runs/x"))
    assert layout.checkpoint(200).name == step_name(200) == "step-0000200"
    assert layout.eval_record(200) == layout.evals / "step-0000200.json"
    assert sorted([step_name(1000), step_name(20)]) == [step_name(20), step_name(1000)]


def test_run_dir_of_a_checkpoint_final_or_run(tmp_path):
    layout = RunLayout(tmp_path)
    layout.final.mkdir(parents=True)
    (layout.final / "config.json").write_text("{}")
    assert run_dir_of(layout.checkpoint(8)) == tmp_path
    assert run_dir_of(layout.final) == tmp_path
    assert run_dir_of(tmp_path) == tmp_path

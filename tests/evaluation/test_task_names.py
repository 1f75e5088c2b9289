"""Which eval task names resolve: built-in and local ones without lm-eval; the rest against lm-eval's task index,
read from the cache once built (the real index is built in tests/commands/test_preflight.py, marked slow)."""

from __future__ import annotations

import json

from pretrain.evaluation import task_names


def test_unknown_names_with_their_closest(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = task_names.index_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(["hellaswag", "arc_easy"]))
    assert task_names.unknown_tasks(["val_bpb", "mine", "arc_easy"], local=["mine"]) == {}
    assert task_names.unknown_tasks(["hellaswagg", "zzz"], local=[]) == {
        "hellaswagg": "hellaswag",
        "zzz": None,
    }


def test_builtin_and_local_names_need_no_index(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(
        task_names, "lm_eval_task_names", lambda: (_ for _ in ()).throw(AssertionError("indexed"))
    )
    assert task_names.unknown_tasks(["stdlib_cloze", "val_bpb", "mine"], local=["mine"]) == {}

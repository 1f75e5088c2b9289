"""Which of a recipe's `eval.tasks` exist: built-in, local, or one of lm-eval's own tasks, groups and tags.

lm-eval learns its task names by indexing the ~15k YAML files it ships (`TaskManager()`): about 9 s of CPU,
longer on a loaded machine. The names depend only on the installed lm-eval, so the index is kept in the user's
cache folder per lm-eval version (`index_path`) and read back in milliseconds by later checks.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
from pathlib import Path

from pretrain.core.atomic import write_json_atomic
from pretrain.core.verdict import Verdict
from pretrain.evaluation.builtin_tasks import BUILTIN_TASKS


def index_path() -> Path:
    """Where the lm-eval task-name index of the installed lm-eval version is kept."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    version = importlib.metadata.version("lm_eval")
    return cache / "pretraining-handbook" / f"lm_eval-{version}-task-names.json"


def lm_eval_task_names() -> set[str]:
    """Every task, group and tag name lm-eval knows (from the cached index when there is one)."""
    path = index_path()
    try:
        return set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    try:
        write_json_atomic(path, names)
    except OSError:  # a read-only home: the next check indexes again
        pass
    return set(names)


def unknown_tasks(tasks: list[str], local: list[str]) -> dict[str, str | None]:
    """The names in `tasks` that are neither built-in, nor in `local`, nor lm-eval's; each with the closest
    known name (None when nothing is close)."""
    ours = set(BUILTIN_TASKS) | set(local)
    rest = [t for t in tasks if t not in ours]
    if not rest:
        return {}
    known = lm_eval_task_names() | ours
    return {
        t: next(iter(difflib.get_close_matches(t, known, n=1, cutoff=0.75)), None)
        for t in rest
        if t not in known
    }


def eval_tasks_verdict(recipe) -> Verdict:
    """✓ when every task of `eval.tasks` and `eval.local_tasks` resolves, else ✗ naming each unknown one."""
    local = [t.name for t in recipe.eval.local_tasks]
    tasks = list(dict.fromkeys([*recipe.eval.tasks, *local]))
    if not recipe.eval.enabled or not tasks:
        return Verdict.passed("eval tasks", "none (in-loop evaluation off)")
    unknown = unknown_tasks(tasks, local)
    if not unknown:
        return Verdict.passed("eval tasks", ", ".join(tasks))
    named = "; ".join(
        f"{t!r} is not a task of lm-eval {importlib.metadata.version('lm_eval')}"
        + (f" (did you mean {close!r}?)" if close else "")
        for t, close in unknown.items()
    )
    return Verdict.failed(
        "eval tasks",
        f"eval.tasks: {named}; fix the name, list the tasks with `lm-eval ls tasks`, or add a local task "
        "(eval.local_tasks)",
    )

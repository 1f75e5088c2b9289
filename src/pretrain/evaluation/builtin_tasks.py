"""Built-in offline tasks that need no downloaded benchmark.

- `val_bpb`: bits-per-byte (and byte/word perplexity) of the run's own held-out val documents
  (`tokens/val_docs.jsonl`), scored with lm-eval's `loglikelihood_rolling`.
- `stdlib_cloze`: 4-way multiple choice built from the Python standard library's *test suite*
  (`Lib/test/`, which the builtin training corpora exclude): given 4 lines of a test file, pick the
  true next line among it and 3 lines of similar length from other test files. Chance is 25%; a small
  LM trained on Python code beats it from indentation and naming alone. Items are deterministic
  for a Python version and seed, and exist on every machine.
"""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

BUILTIN_TASKS = ("val_bpb", "stdlib_cloze")
CLOZE_ITEMS = 1000
CONTEXT_LINES = 4


def _test_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) / "test"
    return sorted(p for p in root.glob("test_*.py") if p.is_file())


def _candidate(line: str) -> bool:
    s = line.strip()
    return 15 <= len(s) <= 100 and not s.startswith("#") and not s.startswith(('"""', "'''"))


def stdlib_cloze_items(seed: int = 0, n: int = CLOZE_ITEMS) -> list[dict]:
    """`{"query", "choices", "gold"}` items (mc_query_choices format), deterministic for `seed`."""
    rng = random.Random(seed)
    files = _test_files()
    lines_by_file = {}
    for path in files:
        try:
            lines = [ln.rstrip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (UnicodeDecodeError, OSError):
            continue
        if len(lines) > CONTEXT_LINES + 1:
            lines_by_file[path.name] = lines
    names = sorted(lines_by_file)
    pool = [(name, ln) for name in names for ln in lines_by_file[name] if _candidate(ln)]
    items = []
    attempts = 0
    while len(items) < n and names and attempts < n * 20:
        attempts += 1
        name = rng.choice(names)
        lines = lines_by_file[name]
        i = rng.randrange(CONTEXT_LINES, len(lines))
        answer = lines[i]
        if not _candidate(answer):
            continue
        distractors = []
        while len(distractors) < 3:
            other, cand = pool[rng.randrange(len(pool))]
            if other != name and 0.5 <= len(cand.strip()) / len(answer.strip()) <= 2 and cand not in distractors:
                distractors.append(cand)
        choices = [answer, *distractors]
        rng.shuffle(choices)
        items.append({"query": "\n".join(lines[i - CONTEXT_LINES : i]), "choices": choices, "gold": choices.index(answer)})
    return items


def write_cloze_file(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for item in stdlib_cloze_items(seed):
                fh.write(json.dumps(item) + "\n")
        tmp.replace(path)
    return path

"""Built-in offline tasks that need no downloaded benchmark.

- `val_bpb`: bits-per-byte (and byte/word perplexity) of the run's own held-out val documents
  (`tokens/val_docs.jsonl`), scored with lm-eval's `loglikelihood_rolling`.
- `position_loss`: held-out loss by position bucket on the val documents longer than the longest bucket
  (evaluation/position_loss.py; computed beside lm-eval, not by it).
- `stdlib_cloze`: 4-way multiple choice built from the Python standard library's *test suite*
  (`Lib/test/`, which the builtin training corpora exclude): given 4 lines of a test file, pick the
  true next line against 3 versions of the same line with its words shuffled (same characters, same
  length, so no length bias). Chance is 25%; a model that has learnt Python's syntax and idioms beats
  it — the tiny recipe's 1.4M-parameter model does within a few hundred steps. Items are deterministic
  for a Python version and seed, and exist on every machine.
"""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

BUILTIN_TASKS = ("val_bpb", "stdlib_cloze", "position_loss")  # position_loss: evaluation/position_loss.py
CLOZE_ITEMS = 1000
CLOZE_VERSION = "v2"  # bump when item generation changes: cached item files are keyed by it
CONTEXT_LINES = 4


def _test_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) / "test"
    return sorted(p for p in root.glob("test_*.py") if p.is_file())


def _candidate(line: str) -> bool:
    s = line.strip()
    return 15 <= len(s) <= 100 and not s.startswith("#") and not s.startswith(('"""', "'''"))


def _shuffled(line: str, rng: random.Random, taken: set[str]) -> str | None:
    indent = line[: len(line) - len(line.lstrip())]
    words = line.split()
    for _ in range(20):
        rng.shuffle(words)
        cand = indent + " ".join(words)
        if cand not in taken:
            return cand
    return None


def stdlib_cloze_items(seed: int = 0, n: int = CLOZE_ITEMS) -> list[dict]:
    """`{"query", "choices", "gold"}` items (mc_query_choices format), deterministic for `seed`."""
    rng = random.Random(seed)
    lines_by_file = {}
    for path in _test_files():
        try:
            lines = [ln.rstrip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (UnicodeDecodeError, OSError):
            continue
        if len(lines) > CONTEXT_LINES + 1:
            lines_by_file[path.name] = lines
    names = sorted(lines_by_file)
    items, attempts = [], 0
    while len(items) < n and names and attempts < n * 50:
        attempts += 1
        lines = lines_by_file[rng.choice(names)]
        i = rng.randrange(CONTEXT_LINES, len(lines))
        answer = lines[i]
        if not _candidate(answer) or len(answer.split()) < 4:
            continue
        choices = [answer]
        for _ in range(3):
            cand = _shuffled(answer, rng, set(choices))
            if cand is None:
                break
            choices.append(cand)
        if len(choices) < 4:
            continue
        rng.shuffle(choices)
        items.append(
            {
                "query": "\n".join(lines[i - CONTEXT_LINES : i]),
                "choices": choices,
                "gold": choices.index(answer),
            }
        )
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

"""Built-in corpora: real text present on every machine without a network.

- `python_stdlib_code`: the `.py` sources of the running Python's standard library. `test/` and
  `idlelib/idle_test/` folders are skipped: they are mostly generated fixtures and odd encodings,
  and the tiny recipe is meant to learn ordinary code.
- `python_stdlib_docs`: module, class and function docstrings of those files, extracted with `ast`
  (English prose about code), one document per module.
- `python_pydoc_topics`: the help topics of `pydoc_data.topics` (the language reference, in prose).

Order is deterministic (sorted paths) so a recipe gives the same mix on the same Python.
"""

from __future__ import annotations

import ast
import functools
import sysconfig
from collections.abc import Iterator
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}


@functools.lru_cache(maxsize=1)
def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        files.append(path)
    return sorted(files)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


FILES_PER_UNIT = 64  # stdlib files per unit: the corpora are split across tasks in chunks of this many


def _chunk(chunk: int | None) -> list[Path]:
    files = stdlib_files()
    return files if chunk is None else files[chunk * FILES_PER_UNIT : (chunk + 1) * FILES_PER_UNIT]


def iter_stdlib_code(chunk: int | None = None) -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _chunk(chunk):
        text = _read(path)
        if text:
            yield f"stdlib:{path.relative_to(root)}", text


def _docstrings(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 40:
                out.append(doc)
    return out


def iter_stdlib_docs(chunk: int | None = None) -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _chunk(chunk):
        text = _read(path)
        if not text:
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        docs = _docstrings(tree)
        if docs:
            yield f"stdlib-doc:{path.relative_to(root)}", "\n\n".join(docs)


def iter_pydoc_topics(chunk: int | None = None) -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc-topic:{name}", topics[name]


BUILTIN = {
    "python_stdlib_code": iter_stdlib_code,
    "python_stdlib_docs": iter_stdlib_docs,
    "python_pydoc_topics": iter_pydoc_topics,
}


def builtin_units(corpus: str) -> int:
    """How many units (chunks read by one task each) the corpus has: the help topics are one."""
    if corpus == "python_pydoc_topics":
        return 1
    return max(1, -(-len(stdlib_files()) // FILES_PER_UNIT))


def iter_builtin(corpus: str, chunk: int | None = None) -> Iterator[tuple[str, str]]:
    """The corpus's documents in order; `chunk`: only that unit's."""
    return BUILTIN[corpus](chunk)

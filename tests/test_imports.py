"""The package's import graph: no cycles, and no function-local import of the package hiding one.

Module-level imports are the dependency graph a reader sees; a `pretrain.*` import inside a function
is how a cycle hides, so none is allowed (third-party imports may stay lazy: optional extras, start-up
time) except where `LAZY` names the module and why; such an import still counts in the cycle check.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pretrain"
LAZY = {  # module -> why it imports the package inside a function
    "pretrain/cli/__init__.py": "the commands import torch and transformers (seconds): `pretrain --help`, "
    "`--version` and usage errors must answer without them (#31 case 10)",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # `from pretrain.x import y` imports the submodule pretrain.x.y when there is one, else a name of x
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return []


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    local: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            targets = [
                t
                for t in _imported(node, name, path.name == "__init__.py", modules)
                if t.startswith("pretrain")
            ]
            if not targets:
                continue
            if id(node) not in top and not _under_type_checking(tree, node):
                if path.relative_to(SRC).as_posix() not in LAZY:
                    local.append(f"{path.relative_to(SRC)}:{node.lineno}")
                    continue
            for t in targets:
                # importing pretrain.a.b also runs pretrain.a's __init__ (unless the importer lives in it)
                parts = t.split(".")
                chain = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
                edges[name] |= {
                    c for c in chain if c in modules and c != name and not name.startswith(c + ".")
                }
    return edges, local


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            if any(n is node for n in ast.walk(stmt)):
                return True
    return False


def test_no_function_local_imports_of_the_package():
    _, local = _graph()
    assert not local, "import these at module level (a local import hides a cycle): " + ", ".join(local)


def test_import_graph_has_no_cycle():
    edges, _ = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(edges[m]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)

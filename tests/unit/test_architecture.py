"""The package keeps the shape docs/architecture.md describes: the library never
imports the command line, and no module imports another that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

from ..support import REPO

PACKAGE = REPO / "convdb"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Absolute dotted names ``path`` imports (relative imports resolved; a
    ``from x import y`` counts as both ``x`` and ``x.y``)."""
    module = _module(path).split(".")
    package = module if path.name == "__init__.py" else module[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            names.add(name)
            names.update(f"{name}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the convdb modules it imports (not its own packages)."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    return {
        m: {r for n in _imports(path) if (r := resolve(n)) and r != m and not m.startswith(r + ".")}
        for m, path in files.items()
    }


def test_the_library_never_imports_the_cli():
    offenders = {
        m: sorted(d for d in deps if d == "convdb.cli" or d.startswith("convdb.cli."))
        for m, deps in _graph().items()
        if not (m == "convdb.cli" or m.startswith("convdb.cli."))
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append([*path[path.index(n) :], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

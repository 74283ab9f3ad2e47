"""The import rule of docs/architecture.md, checked on the source of every module.

A module of ``caresync`` imports only from its own layer or a lower one (core < trust < store < sync < replica <
field < cli), counting imports under ``TYPE_CHECKING`` and inside functions; no import closes a circle; only the
store touches the store (its private parts, raw SQL, SQLite itself); ``caresync_server`` imports only the core,
trust, the wire format, the bundle format and the errors. Every failure names the file and the line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "caresync"
SERVER = ROOT / "server" / "src" / "caresync_server"

#: Each subpackage (or top-level module) of caresync and its rank; a module may import ranks up to its own.
LAYERS: dict[str, int] = {
    "_version": 0,
    "errors": 0,
    "core": 0,
    "trust": 1,
    "testing": 1,
    "store": 2,
    "sync": 3,
    "replica": 4,
    "field": 5,
    "cli": 6,
    "console": 6,
}
#: The package's face: it re-exports from every layer, and nothing inside the package may import it.
TOP = 99
TOP_MODULES = {"caresync", "caresync.__main__", "caresync._moved"}

#: What the server distribution may import from the library: its pure parts and the formats it serves.
SERVER_MAY_IMPORT = (
    "caresync.errors",
    "caresync.core",
    "caresync.trust",
    "caresync.sync.wire",
    "caresync.sync.bundles.format",
)

#: Modules that open an SQLite file of their own that is not a replica (reason beside each).
OWN_SQLITE = {
    "caresync.sync.bundles.bag": "the courier's bag is a file of carried bundles, not a replica",
    "caresync.console.accounts": "the console's staff accounts and sessions, the desk's own file, not a replica",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}


ALL = {**_modules(SRC, "caresync"), **_modules(SERVER, "caresync_server")}


def _resolve(target: str) -> str:
    """The module an import names: ``from caresync.sync import netsync`` names ``caresync.sync.netsync``."""
    return target


def imports_of(name: str, path: Path) -> Iterator[Edge]:
    """Every import in a module, wherever it stands (top level, ``TYPE_CHECKING``, inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(name, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                yield Edge(name, child if child in ALL else module, path, node.lineno)


def rank(module: str) -> int:
    if module in TOP_MODULES:
        return TOP
    parts = module.split(".")
    return LAYERS[parts[1]]


def _library_edges() -> list[Edge]:
    return [
        e
        for name, path in ALL.items()
        if name.startswith("caresync.") or name == "caresync"
        for e in imports_of(name, path)
        if e.target == "caresync" or e.target.startswith("caresync.")
    ]


def test_every_module_is_in_a_layer() -> None:
    unplaced = [n for n in ALL if n.startswith("caresync.") and n not in TOP_MODULES and n.split(".")[1] not in LAYERS]
    assert not unplaced, f"modules in no layer (add them to a layer package): {unplaced}"


def test_imports_point_down() -> None:
    wrong = [
        f"{e.where()}: {e.source} (layer {e.source.split('.')[1]}) imports {e.target}, a higher layer"
        if e.target != "caresync" or e.source in TOP_MODULES
        else f"{e.where()}: {e.source} imports the package's face (caresync); import the module that defines it"
        for e in _library_edges()
        if e.source not in TOP_MODULES and rank(e.target) > rank(e.source)
    ]
    wrong = list(dict.fromkeys(wrong))  # one line per import statement, however many names it imports
    assert not wrong, "imports against the layer rule:\n" + "\n".join(wrong)


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_closes_a_circle() -> None:
    edges = [e for e in _library_edges() if e.target != "caresync" and e.source not in TOP_MODULES]
    cycles = find_cycles(edges)
    described = []
    for cycle in cycles:
        inside = sorted({(e.where(), e.target) for e in edges if e.source in cycle and e.target in cycle})
        described.append(
            " <-> ".join(cycle) + "\n" + "\n".join(f"  {where}: imports {target}" for where, target in inside)
        )
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_the_server_imports_only_the_library_s_pure_parts_and_formats() -> None:
    wrong = [
        f"{e.where()}: {e.source} imports {e.target}"
        for name, path in ALL.items()
        if name.startswith("caresync_server")
        for e in imports_of(name, path)
        if (e.target == "caresync" or e.target.startswith("caresync."))
        and not any(e.target == p or e.target.startswith(p + ".") for p in SERVER_MAY_IMPORT)
    ]
    assert not wrong, "the server reaches past core, trust and the formats:\n" + "\n".join(wrong)


def _store_reach_ins(name: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "_store":
            yield f"{where}:{node.lineno}: reaches into a store (._store)"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sql":
            yield f"{where}:{node.lineno}: runs raw SQL (.sql(...))"
        elif isinstance(node, ast.Import | ast.ImportFrom) and name not in OWN_SQLITE:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.split(".")[0] in ("sqlite3", "sqlalchemy", "sqlmodel") for n in names):
                yield f"{where}:{node.lineno}: opens SQL itself ({', '.join(names)})"


def test_only_the_store_touches_the_store() -> None:
    wrong = [
        problem
        for name, path in ALL.items()
        if name.startswith("caresync.") and not name.startswith("caresync.store.")
        for problem in _store_reach_ins(name, path)
    ]
    assert not wrong, "outside caresync.store:\n" + "\n".join(wrong)


def _own_private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines itself: its functions, methods, classes and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def _private_reach_ins(path: Path) -> Iterator[str]:
    """``other._name`` where ``other`` is not ``self`` or ``cls`` and ``_name`` is not the module's own: a module
    using the private parts of an object another module defines."""
    tree = ast.parse(path.read_text(), str(path))
    own = _own_private_names(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in own
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            yield f"{path.relative_to(ROOT)}:{node.lineno}: uses {ast.unparse(node)}, another module's private part"


def test_no_module_uses_another_module_s_private_parts() -> None:
    wrong = [p for name, path in ALL.items() if name.startswith("caresync.") for p in _private_reach_ins(path)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("caresync.core.merge", "from caresync.replica import Replica", "imports caresync.replica, a higher layer"),
        ("caresync.trust.keys", "from caresync import Replica", "imports the package's face"),
        ("caresync.store.store", "from caresync.sync import netsync", "imports caresync.sync.netsync, a higher"),
    ],
)
def test_the_rule_catches_an_upward_import(
    module: str, line: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above can fail: one upward import added to a module is named with its file and line."""
    original = ALL[module]
    copy = tmp_path / original.name
    copy.write_text(original.read_text() + f"\n\ndef _late() -> None:\n    {line}\n")
    monkeypatch.setitem(ALL, module, copy)
    monkeypatch.setattr(Edge, "where", lambda self: f"{self.path}:{self.line}")
    with pytest.raises(AssertionError, match=expected):
        test_imports_point_down()


def test_the_rule_catches_a_cycle() -> None:
    edges = [
        Edge("caresync.core.a", "caresync.core.b", SRC, 1),
        Edge("caresync.core.b", "caresync.core.a", SRC, 2),
        Edge("caresync.core.c", "caresync.core.a", SRC, 3),
    ]
    assert find_cycles(edges) == [["caresync.core.a", "caresync.core.b"]]

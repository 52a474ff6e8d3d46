"""The shape of the library (issue 29, "split along the seams"): small modules, short functions, no import circle,
and one list of each package's modules (its ``__init__`` docstring, which the README's Layout points to instead of
restating it).
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "trades_instability"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80  # from `def` to its last line, docstring included

MODULES = sorted(PACKAGE.rglob("*.py"))
PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py"))


def _rel(p: Path) -> str:
    return p.relative_to(PACKAGE.parent).as_posix()


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function or method over the limit, nested ones included."""
    spans = [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(ast.parse(source))
             if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [(name, n) for name, n in spans if n > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_is_small(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)} has {lines} lines; split it along a seam"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_functions_are_short(path):
    long = long_functions(path.read_text())
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("package", PACKAGES, ids=_rel)
def test_package_docstring_names_every_module(package):
    """Each module of a package appears in the package docstring by its name (``name``, name.py or a bare word),
    so that the one list of modules is complete."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", doc))
    members = [p.stem for p in package.glob("*.py") if p.stem != "__init__"]
    members += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    missing = sorted(m for m in members if m not in words and m != "__main__")
    assert not missing, f"{_rel(package)}/__init__.py docstring does not name: {missing}"


def test_long_function_is_found():
    """The function check counts from `def` to the last line, methods and nested functions included."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    source = f"class A:\n    def short(self):\n        pass\n\n    def long(self):\n{body}\n"
    assert long_functions(source) == []  # exactly at the limit
    assert long_functions(source + "        y = 0\n") == [("long", MAX_FUNCTION_LINES + 1)]


def import_graph() -> dict[str, set[str]]:
    """module -> the library modules it imports, at the top or inside a function (a late import still ties
    the two files together), each ``from package import module`` resolved to the module."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        out = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom) and node.module in names:
                subs = {f"{node.module}.{a.name}" for a in node.names} & names.keys()
                out |= subs or {node.module}
        out.discard(name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    """Imports run one way, from the stages down to core (README, Layout): no two modules import each other,
    directly or round a loop, not even through a late import inside a function."""
    assert circles(import_graph()) == []


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert "trades_instability.data.splits" in import_graph()["trades_instability.train.loop"]

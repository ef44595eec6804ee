"""The shape of famlib's code: an import graph without cycles, and functions short enough to read at once.

A cycle hidden behind a function-level import still ties two modules into one: neither can be understood,
tested or moved without the other, and the import that closes it fails at run time once someone moves it to
the top. So the imports inside functions (the lazy ones) count too; those under ``if TYPE_CHECKING:`` are for
annotations only and do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import famlib

ROOT = Path(famlib.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["famlib", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The famlib modules ``module`` imports anywhere in its file (``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module, as ``pkg`` otherwise)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.stmt) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            subs = [f"{source}.{a.name}" for a in node.names]
            found.update(s for s in subs if s in known)
            if source in known and any(s not in known for s in subs):
                found.add(source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(module)
    return found


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts))}  # famlib itself is empty


def import_graph() -> dict[str, set[str]]:
    """Module -> the famlib modules its imports execute: each imported module and the packages above it
    (importing ``famlib.strategies.registry`` runs ``famlib/strategies/__init__.py`` first), except the
    packages above the importing module itself, which always run before it."""
    modules = _modules()
    graph = {}
    for m, p in modules.items():
        direct = _imports(m, p, set(modules))
        above = {a for d in direct for a in _ancestors(d) if a in modules}
        graph[m] = (direct | above) - _ancestors(m) - {m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_famlib_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "famlib.strategies.rules" in graph["famlib.surgery.soup"]
    found = cycles(graph)
    shown = "\n".join(" <-> ".join(c) + "\n    " + "; ".join(
        f"{a} -> {', '.join(sorted(b for b in graph[a] if b in c))}" for a in c) for c in found)
    assert not found, f"import cycles (lazy imports included):\n{shown}"


def test_importing_a_submodule_runs_its_package_first():
    graph = import_graph()
    # config imports famlib.strategies.registry (lazily), which executes famlib/strategies/__init__.py
    assert {"famlib.strategies.registry", "famlib.strategies"} <= graph["famlib.config"]
    assert "famlib.data" not in graph["famlib.data.corpus"]  # its own package is not an edge


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    """The check can fail: two modules that import each other, one of them inside a function."""
    graph = {"famlib.a": {"famlib.b"}, "famlib.b": {"famlib.a"}, "famlib.c": {"famlib.a"}}
    assert cycles(graph) == [["famlib.a", "famlib.b"]]
    lazy = tmp_path / "b.py"
    lazy.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from famlib import c\n"
                    "def f():\n    from famlib.a import thing\n    return thing\n")
    assert _imports("famlib.b", lazy, {"famlib.a", "famlib.b", "famlib.c"}) == {"famlib.a"}
    pkg = tmp_path / "__init__.py"
    pkg.write_text("from famlib.p import sub, CONSTANT\nfrom . import other\n")
    assert _imports("famlib.p", pkg, {"famlib.p", "famlib.p.sub", "famlib.p.other"}) == {"famlib.p.sub",
                                                                                          "famlib.p.other"}


MAX_LINES = 80  # code lines of a function, its docstring not counted
LONG_REASON = "Long on purpose:"  # a function may be longer if its docstring starts a paragraph with this


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    n = fn.end_lineno - fn.lineno + 1
    doc = fn.body[0]
    if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
        n -= doc.end_lineno - doc.lineno + 1
    return n


def long_functions(paths, root: Path = ROOT.parent) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > MAX_LINES:
                if LONG_REASON not in (ast.get_docstring(node) or ""):
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {_code_lines(node)} lines")
    return out


def test_no_function_is_longer_than_80_lines_without_a_reason():
    assert not long_functions(sorted(ROOT.rglob("*.py")))


def test_the_length_check_counts_code_not_docstrings(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    long = tmp_path / "m.py"
    long.write_text(f'def short():\n    """{"doc line" + chr(10) * 100}"""\n    return 1\n\n\n'
                    f"def too_long():\n{body}\n    return 0\n\n\n"
                    f'def explained():\n    """Builds a table.\n\n    {LONG_REASON} one table, row by row."""\n{body}\n'
                    "    return 0\n")
    assert [s.split(" ")[1] for s in long_functions([long], root=tmp_path)] == ["too_long:"]

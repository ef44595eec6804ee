"""famlib's import graph has no cycle (issue 22).

The graph is read from the source with :mod:`ast`; nothing is imported. Its nodes are famlib's modules
(``famlib.x`` for ``famlib/x.py``, ``famlib.pkg`` for ``famlib/pkg/__init__.py``) and an edge ``A -> B`` means
that executing A's module body imports B. What counts:

* Imports that run when the module is imported: top-level statements, including those inside top-level
  ``if``/``try``/``with``/``for`` blocks and class bodies. Imports inside a function (or lambda) body are
  deliberate lazy imports and are left out, and so is the body of ``if TYPE_CHECKING:``, which never runs.
* ``import famlib.pkg.sub`` and ``from famlib.pkg.sub import name`` point at ``famlib.pkg.sub``.
* ``from famlib.pkg import name`` points at ``famlib.pkg.name`` when that is a submodule, else at
  ``famlib.pkg`` (the name comes from the package's ``__init__``). Relative imports are resolved the same way.
* Importing ``famlib.pkg.sub`` also executes ``famlib/pkg/__init__.py`` first, so the importer gets an edge to
  each package above its target too, except to the packages it lives in itself: those are already being
  imported by the time its body runs (a package's ``__init__`` importing its own submodules is no cycle). A
  submodule that asks its own package for a name (``from famlib.pkg import name`` inside ``famlib.pkg.sub``)
  does get the edge: that is the half-initialised-package cycle this test is here to catch.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import famlib

ROOT = Path(famlib.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = ("famlib",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def famlib_modules() -> dict[str, Path]:
    """Every module under famlib/, by dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when a module body with these statements runs."""
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # a lazy import: runs when the function is called
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from module_level_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody"):
                yield from module_level_imports(getattr(node, field, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                yield from module_level_imports(handler.body)
            for case in getattr(node, "cases", None) or []:
                yield from module_level_imports(case.body)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> Optional[str]:
    if not node.level:
        return node.module
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_targets(importer: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The famlib modules that *importer*'s body imports directly, resolved as the module docstring says."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    named: set[str] = set()
    for node in module_level_imports(tree.body):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
            continue
        source = _absolute(node, importer, is_package)
        if source is None:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            named.add(submodule if submodule in modules else source)
    targets: set[str] = set()
    own_packages = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    for name in named:
        if not (name == "famlib" or name.startswith("famlib.")):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            above = ".".join(parts[:i])
            if above in modules and (above == name or above not in own_packages) and above != importer:
                targets.add(above)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = famlib_modules()
    return {name: import_targets(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search, sorted for a stable answer)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected tangle, found by cutting the last edge of each cycle and searching again."""
    graph = {node: set(targets) for node, targets in graph.items()}
    cycles = []
    while (cycle := find_cycle(graph)) is not None:
        cycles.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])
    return cycles


def test_import_graph_is_read_from_every_module():
    graph = import_graph()
    assert "famlib.train" in graph and "famlib.strategies.registry" in graph
    assert "famlib.config" in graph["famlib.train"]  # a plain top-level import is an edge
    assert all(target in graph for targets in graph.values() for target in targets)


def test_no_import_cycle():
    cycles = all_cycles(import_graph())
    assert not cycles, "famlib's module-level imports form cycles:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_reports_a_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert all_cycles({"a": {"b"}, "b": {"a"}, "c": {"c"}}) == [["a", "b", "a"], ["c", "c"]]


def test_resolution_rules(tmp_path):
    """The rules in the module docstring, on a made-up package laid out like famlib."""
    files = {
        "famlib/__init__.py": "",
        "famlib/pkg/__init__.py": "from famlib.pkg.sub import thing\n",
        "famlib/pkg/sub.py": (
            "from typing import TYPE_CHECKING\n"
            "from famlib.pkg import thing\n"           # a name from its own package: an edge to famlib.pkg
            "if TYPE_CHECKING:\n    import famlib.top\n"  # never runs: no edge
            "try:\n    from famlib import leaf\nexcept ImportError:\n    pass\n"  # a submodule named from famlib
            "def lazy():\n    import famlib.top\n"     # lazy: no edge
        ),
        "famlib/pkg/other.py": "from . import sub\nfrom .sub import thing\n",
        "famlib/leaf.py": "",
        "famlib/top.py": "import famlib.pkg.other\n",  # also executes famlib/pkg/__init__.py
        "famlib/user.py": "class C:\n    from famlib.pkg import other\n",  # a submodule named from its package
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    global ROOT
    saved, ROOT = ROOT, tmp_path / "famlib"
    try:
        modules = famlib_modules()
        graph = {name: import_targets(name, path, modules) for name, path in modules.items()}
    finally:
        ROOT = saved
    assert graph == {
        "famlib": set(),
        "famlib.pkg": {"famlib.pkg.sub"},
        "famlib.pkg.sub": {"famlib.pkg", "famlib.leaf"},
        "famlib.pkg.other": {"famlib.pkg.sub"},
        "famlib.leaf": set(),
        "famlib.top": {"famlib.pkg", "famlib.pkg.other"},
        "famlib.user": {"famlib.pkg", "famlib.pkg.other"},
    }
    assert find_cycle(graph) == ["famlib.pkg", "famlib.pkg.sub", "famlib.pkg"]

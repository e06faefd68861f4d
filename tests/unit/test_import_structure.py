"""The import structure of ``encproxy/`` (issue 13), read with ``ast``, never imported.

* The module import graph has no cycle. Edges go only to encproxy modules;
  ``from encproxy.x import y`` is an edge to ``encproxy.x.y`` if that is a module, else to
  ``encproxy.x``; imports inside functions count, those under ``if TYPE_CHECKING:`` do not.
* No module imports a private name (``_name``) from another encproxy module.
* No helper reaches into the middleware's privates: ``mw._`` occurs nowhere (the check
  ``grep -rn "mw\\._" encproxy`` makes).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "encproxy"
SOURCE_ROOT = Path(__file__).resolve().parents[2]   # the directory that holds encproxy/


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted((SOURCE_ROOT / PACKAGE).rglob("*.py"))}


MODULES = source_files()


@dataclass(frozen=True)
class Import:
    module: str        # the importing module
    target: str        # the encproxy module the edge goes to
    source: str        # the module named in the statement (``from <source> import``)
    name: str | None   # the name imported with ``from ... import name``, else None
    line: int


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in the tree (functions included), except the body of
    ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def resolve_base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name ``from <base> import ...`` names."""
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        package = package[:-(node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    found = []
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    target = alias.name
                    while target not in MODULES:      # import encproxy.x.Name? never; be safe
                        target = target.rsplit(".", 1)[0]
                    found.append(Import(module, target, alias.name, None, node.lineno))
            continue
        base = resolve_base(module, node)
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            continue
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            target = candidate if candidate in MODULES else base
            found.append(Import(module, target, base, alias.name, node.lineno))
    return found


def import_graph() -> tuple[dict[str, set[str]], list[Import]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    everything = []
    for module in MODULES:
        for imp in imports_of(module):
            everything.append(imp)
            if imp.target != module:
                edges[module].add(imp.target)
    return edges, everything


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return out


def a_cycle(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module (breadth-first: shortest)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_the_scan_sees_the_package() -> None:
    edges, _ = import_graph()
    assert "encproxy.errors" in MODULES and "encproxy.wsgi.stack" in MODULES
    assert "encproxy.errors" in edges["encproxy.wsgi.stack"]   # import from encproxy.errors
    assert sum(len(targets) for targets in edges.values()) > 100


def test_no_import_cycle() -> None:
    edges, _ = import_graph()
    components = strongly_connected(edges)
    report = "\n".join(
        f"  {' -> '.join(a_cycle(edges, c))}   (circle of {len(c)}: {', '.join(c)})"
        for c in components)
    assert not components, f"import cycles in {PACKAGE}/:\n{report}"


def test_no_private_name_is_imported_from_another_module() -> None:
    _, imports = import_graph()
    private = [imp for imp in imports
               if imp.name is not None and imp.name.startswith("_")
               and not (imp.name.startswith("__") and imp.name.endswith("__"))
               and imp.target != imp.module]
    report = "\n".join(f"  {MODULES[i.module].relative_to(SOURCE_ROOT)}:{i.line}: "
                       f"from {i.source} import {i.name}" for i in private)
    assert not private, f"private names imported across modules:\n{report}"


def private_module_attributes(module: str) -> Iterator[str]:
    """``m._name`` where ``m`` is bound to another encproxy module by an import
    (``from encproxy.wsgi import subrequest`` then ``subrequest._prepend``): the same
    reach into a private name, written as an attribute."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    bound = {}
    for node in runtime_imports(tree):
        for alias in node.names:
            if isinstance(node, ast.Import):
                if alias.asname and alias.name in MODULES:
                    bound[alias.asname] = alias.name
                continue
            base = resolve_base(module, node)
            if f"{base}.{alias.name}" in MODULES:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in bound and bound[node.value.id] != module \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            yield (f"  {MODULES[module].relative_to(SOURCE_ROOT)}:{node.lineno}: "
                   f"{node.value.id}.{node.attr} ({bound[node.value.id]})")


def test_no_private_name_is_used_through_an_imported_module() -> None:
    found = [line for module in MODULES for line in private_module_attributes(module)]
    assert not found, "private names of other modules used as attributes:\n" + "\n".join(found)


def test_no_helper_calls_the_middlewares_private_methods() -> None:
    found = [f"  {path.relative_to(SOURCE_ROOT)}:{number}: {line.strip()}"
             for path in MODULES.values()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(),
                                           start=1)
             if "mw._" in line]
    assert not found, "uses of the middleware's private members (mw._):\n" + "\n".join(found)


# -- the checks themselves ---------------------------------------------------------------------

def test_cycles_are_found_and_reported() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert a_cycle(edges, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_not_edges() -> None:
    tree = ast.parse(
        "import typing\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from encproxy.a import A\n"
        "else:\n    from encproxy.b import B\n"
        "if typing.TYPE_CHECKING:\n    import encproxy.c\n"
        "def f():\n    from encproxy.d import D\n")
    names = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
             for n in runtime_imports(tree)]
    assert sorted(names) == ["encproxy.b", "encproxy.d", "typing", "typing"]


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (rootdir, no packages): two of one name
    in different folders stop the whole run at collection."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py") if "__pycache__" not in p.parts]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []

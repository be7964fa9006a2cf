"""Module boundaries, read from the source with ``ast`` (every import counts, those inside functions too).

* Dependencies point one way, annotation ← curation ← ml: no module of annotation imports curation or ml,
  and no module of curation imports ml.
* No import cycle among the project's modules (annotation, curation, ml, config): a module never imports,
  even lazily inside a function, a module that imports it, directly or through others. A service that
  queues a Celery task therefore takes the task from its caller (tasks modules import services, never the
  reverse), and ``ml.services.registry`` imports ``ml.services.active_learning``, not both ways.

An import of a name from a package (``from ml.services.runs import start_run``) is an edge to the
package's ``__init__``; an import of a submodule (``from ml.services import runs``) is an edge to that
module. Importing a submodule runs its parent packages too, but those edges are left out: every
package's ``__init__`` imports its own submodules, and that is not a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("annotation", "curation", "ml", "config")
FORBIDDEN = {"annotation": ("curation", "ml"), "curation": ("ml",)}  # layer -> the layers above it


def _modules() -> dict[str, Path]:
    """Every project module by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports_in(source: str, package: str) -> list[tuple[str, int]]:
    """``(module, line)`` of every import in ``source`` (a module of ``package``), at any depth, relative
    ones resolved; ``from a import b`` names the module ``a.b`` where that is a project module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in MODULES else base, node.lineno))
    return found


def _imported(name: str) -> list[tuple[str, int]]:
    path = MODULES[name]
    return _imports_in(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0])


def _project_module(imported: str) -> str | None:
    """The project module an import runs (the longest known prefix), or None for a third-party one."""
    while imported and imported not in MODULES:
        imported = imported.rpartition(".")[0]
    return imported or None


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name in MODULES:
        edges = graph.setdefault(name, {})
        for imported, line in _imported(name):
            target = _project_module(imported)
            if target is not None and target != name:
                edges.setdefault(target, line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_layers_import_only_downwards():
    wrong = []
    for name, edges in _graph().items():
        above = FORBIDDEN.get(name.split(".")[0], ())
        wrong += [
            f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
            for target, line in edges.items()
            if target.split(".")[0] in above
        ]
    assert not wrong, "annotation <- curation <- ml, never the other way:\n" + "\n".join(sorted(wrong))


def test_no_module_imports_a_module_that_imports_it():
    graph = _graph()
    report = []
    for component in _cycles(graph):
        report.append("cycle: " + ", ".join(component))
        report += [
            f"  {MODULES[a].relative_to(ROOT)}:{line} imports {b}"
            for a in component
            for b, line in sorted(graph[a].items())
            if b in component
        ]
    assert not report, "import cycles:\n" + "\n".join(report)


def test_the_checks_see_lazy_and_relative_imports_and_cycles():
    """The parser and the cycle finder catch what they exist for: an import inside a function, a relative
    import, a circle through three modules."""
    source = "def f():\n    from ml.services import active_learning\n\n\nfrom ..models import Job\n"
    assert _imports_in(source, "curation.services") == [("curation.models", 5), ("ml.services.active_learning", 2)]
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []

"""No module uses another module's ``_private`` names (issue 14, "Architecture").

A leading underscore says "this module's own business". A module that imports such a name from another one
(``from curation.services.importing.bulk import _insert``), reads it off an imported module
(``catalog._pair_state``) or patches it by name (``monkeypatch.setattr(exporting.source, "_read", ...)``,
``mock.patch("a.b._c")``) depends on internals nobody promised to keep: what one module offers another is
public, and tests go through public names too. Every ``.py`` file of the project is parsed with :mod:`ast`
(imports inside functions count); a project module is one whose top package is in :data:`PACKAGES`. Dunder
names (``__version__``) are not private; a module's own private names are its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("annotation", "curation", "ml", "config", "bench", "tests", "science_t2i")
# Calls naming an attribute of their first argument by a string: setattr(module, "_x", ...), patch.object...
NAMED_ATTRIBUTE_CALLS = {"setattr", "getattr", "hasattr", "delattr", "object"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _project(dotted: str | None) -> bool:
    return bool(dotted) and dotted.split(".")[0] in PACKAGES


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but a name and its attributes."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else None


def _private_of_module(dotted: list[str], me: str) -> str | None:
    """``module._name`` when ``dotted`` reads a private name off a project module other than ``me``."""
    for i in range(1, len(dotted)):
        module = ".".join(dotted[:i])
        if not _is_module(module):
            return None
        if _private(dotted[i]):
            return None if module == me else f"{module}.{dotted[i]}"
    return None


def private_uses(source: str, module: str, *, is_package: bool = False, label: str = "") -> list[str]:
    """``label:line: what`` for each use of another module's private name in ``source``, the text of the
    project module named ``module`` (``is_package``: an ``__init__.py``)."""
    tree = ast.parse(source, label or module)
    package = module if is_package else module.rpartition(".")[0]
    modules: dict[str, str] = {}  # local name -> the project module it is bound to (file-wide)
    found = set()

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source_module = ".".join(base + ([node.module] if node.module else []))
            else:
                source_module = node.module or ""
            if not _project(source_module):
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.add((node.lineno, f"from {source_module} import {alias.name}"))
                elif _is_module(f"{source_module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{source_module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _project(alias.name):
                    modules[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )

    def resolved(expr) -> list[str] | None:
        names = _chain(expr)
        if names is None or names[0] not in modules:
            return None
        return modules[names[0]].split(".") + names[1:]

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = resolved(node)
            if dotted and (name := _private_of_module(dotted, module)):
                found.add((node.lineno, name))
        elif isinstance(node, ast.Call) and len(node.args) >= 1:
            func, args = node.func, node.args
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = args[0]
            if (
                called in NAMED_ATTRIBUTE_CALLS
                and len(args) >= 2
                and isinstance(args[1], ast.Constant)
                and isinstance(args[1].value, str)
            ):
                target = resolved(first)
                if target and (name := _private_of_module([*target, args[1].value], module)):
                    found.add((node.lineno, f"{called}(..., {args[1].value!r}): {name}"))
            elif (
                called == "patch"
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _project(first.value)
                and _private_of_module(first.value.split("."), module)
            ):
                found.add((node.lineno, f"patch({first.value!r})"))
    return [f"{label or module}:{line}: {what}" for line, what in sorted(found)]


def _project_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


def test_no_module_uses_another_modules_private_names():
    found = []
    for path in _project_files():
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        found += private_uses(
            path.read_text(encoding="utf-8"), module, is_package=is_package, label=path.relative_to(ROOT).as_posix()
        )
    assert not found, (
        f"{len(found)} use(s) of another module's _private names (make the name public in its "
        "module, or stop using it):\n" + "\n".join(found)
    )


def test_the_check_sees_imports_attributes_and_patches_by_name():
    source = """
import curation.services.importing.bulk
import annotation.services.catalog as cat
from curation.services.importing import bulk
from curation.services.importing.bulk import _insert
from .bulk import _BulkWriter
from annotation import __version__
from annotation.services.catalog import upsert_tuple, _pair_state as state

def f(monkeypatch, mock):
    from ml.core.scorer import _clip_tokenizer
    cat._tuple_state(None)
    curation.services.importing.bulk._insert
    bulk.insert_rows
    bulk.BulkWriter._private_method   # a class's member, not the module's
    monkeypatch.setattr(bulk, "_insert", None)
    monkeypatch.setattr(bulk, "insert_rows", None)
    mock.patch("curation.services.exporting.source._read")
    mock.patch("curation.services.exporting.source.read_stored_file")
    _own()
"""
    found = private_uses(source, "curation.services.importing.orchestration", label="x.py")
    assert [line.split(": ", 1)[1] for line in found] == [
        "from curation.services.importing.bulk import _insert",
        "from curation.services.importing.bulk import _BulkWriter",
        "from annotation.services.catalog import _pair_state",
        "from ml.core.scorer import _clip_tokenizer",
        "annotation.services.catalog._tuple_state",
        "curation.services.importing.bulk._insert",
        "setattr(..., '_insert'): curation.services.importing.bulk._insert",
        "patch('curation.services.exporting.source._read')",
    ]
    # A module's own private names are its own business.
    assert (
        private_uses("import curation.services.importing.bulk as me\nme._insert\n", "curation.services.importing.bulk")
        == []
    )

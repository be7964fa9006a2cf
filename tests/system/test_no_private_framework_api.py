"""No private API of the frameworks anywhere in the project (issue 14, "Architecture").

Django, DRF, Celery, psycopg and the libraries below them mark their internals with a leading underscore;
code that reaches into them breaks on an upgrade without a deprecation warning. This test reads every Python
file of the project (the apps, config, bench, science_t2i and the tests, except this file) with ``ast`` and
reports every attribute access ``x._name`` (and ``getattr(x, "_name")``, ``setattr``, ``hasattr``,
``delattr``) whose ``_name`` the project does not define itself:

* **project names** are allowed: every function, method or class the project defines and every name or
  attribute it assigns (``self._lock = ...`` in a project class makes ``x._lock`` the project's own);
* **documented names** are allowed: the few underscore names the libraries document as public
  (:data:`DOCUMENTED_PUBLIC`, each with where it is documented);
* **known internals** are refused even where a project name happens to match (a project helper called
  ``_state`` does not make ``obj._state.adding`` the project's): :data:`FRAMEWORK_INTERNALS` and the
  ``_get_`` prefix, allowed only as ``self.x``/``cls.x`` inside a class that defines ``x`` itself;
* **private classes and functions** that must not even be imported: :data:`FORBIDDEN_NAMES`.
"""

from __future__ import annotations

import ast
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

SCANNED = ("annotation", "curation", "ml", "config", "bench", "science_t2i", "tests")
THIS_FILE = Path(__file__).resolve()

# Underscore names that their libraries document as public API.
DOCUMENTED_PUBLIC = {
    "_meta",  # Django: the Model _meta API (docs: ref/models/meta)
    "_default_manager",  # Django: Model._default_manager (docs: topics/db/managers)
    "_base_manager",  # Django: Model._base_manager (docs: topics/db/managers)
    "_exit",  # os._exit
    "_getframe",  # sys._getframe
    "_current_frames",  # sys._current_frames
    "_asdict",  # collections.namedtuple (documented methods and attributes)
    "_replace",
    "_make",
    "_fields",
    "_field_defaults",
    "_value_",  # enum: the documented "_sunder_" names
    "_name_",
    "_missing_",
    "_ignore_",
    "_order_",
    "_generate_next_value_",
}

# Internals of Django/DRF/psycopg/Celery that the project must never touch, whatever it names its own things.
FRAMEWORK_INTERNALS = {
    "_state",  # Django Model._state (adding, db): set by the ORM
    "_prepare_cursor",  # Django DatabaseWrapper internals
    "_cursor",
    "_connection",
    "_authenticator",  # DRF Request internals
    "_request",  # DRF Request._request (the Django HttpRequest behind it)
    "_user",
    "_data",  # DRF Serializer/Request internals
    "_errors",
    "_validated_data",
    "_files",
    "_full_data",
    "_messages",  # django.contrib.messages storage on the request (use messages.get_messages)
    "_registry",  # AdminSite._registry (use site.is_registered / get_model_admin)
    "_out",  # management OutputWrapper._out
}
INTERNAL_PREFIXES = ("_get_",)  # e.g. drf-spectacular's AutoSchema._get_response_for_code

# Private classes and functions, refused as names too (an import is already a use).
FORBIDDEN_NAMES = {
    "ServerBindingCursor",  # psycopg's server-side binding cursor, reached through Django's backend internals
    "register_tzloader",  # Django's PostgreSQL backend helper
}

_ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr"}


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def project_files() -> list[Path]:
    """Every Python file git tracks (or would: new files not ignored) under the scanned folders."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *(f"{d}/*.py" for d in SCANNED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    files = sorted({(REPO / name).resolve() for name in listed})
    return [path for path in files if path.is_file() and path != THIS_FILE]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name != "_"


def defined_names(trees: list[ast.AST]) -> set[str]:
    """Every name the project defines: functions, classes, assigned names and assigned attributes."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def _own_names(cls: ast.ClassDef) -> set[str]:
    """What a class defines itself: its methods and class attributes, and ``self.x = ...`` in its methods."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not cls:
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, defined: set[str]):
        self.path, self.defined = path, defined
        self.classes: list[set[str]] = []
        self.hits: list[Hit] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(_own_names(node))
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, node.attr, node.value, f".{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in _ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
            self._check(node, name, node.args[0], f'{func.id}(..., "{name}")')
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.hits.append(Hit(self.path, node.lineno, node.id))

    def visit_alias(self, node: ast.alias) -> None:
        if node.name.rsplit(".", 1)[-1] in FORBIDDEN_NAMES:
            self.hits.append(Hit(self.path, node.lineno, f"import {node.name}"))

    def _check(self, node: ast.AST, name: str, owner: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        if name in FORBIDDEN_NAMES:
            self.hits.append(Hit(self.path, line, what))
            return
        if not _is_private(name) or name in DOCUMENTED_PUBLIC:
            return
        if name in FRAMEWORK_INTERNALS or name.startswith(INTERNAL_PREFIXES):
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls") and self.classes
            if not (own and name in self.classes[-1]):
                self.hits.append(Hit(self.path, line, f"{what} (a framework internal)"))
        elif name not in self.defined:
            self.hits.append(Hit(self.path, line, f"{what} (not defined by the project)"))


def scan(sources: dict[str, str]) -> list[Hit]:
    """The hits in ``{path: source}``; names count as the project's when any of the sources defines them."""
    trees = {path: ast.parse(text, path) for path, text in sources.items()}
    defined = defined_names(list(trees.values()))
    hits: list[Hit] = []
    for path, tree in trees.items():
        scanner = _Scanner(path, defined)
        scanner.visit(tree)
        hits += scanner.hits
    return sorted(set(hits), key=lambda hit: (hit.path, hit.line, hit.what))


def test_the_project_uses_no_private_framework_api():
    files = project_files()
    assert len(files) > 100, "the scan found too few files to be looking at the project"
    hits = scan({str(path.relative_to(REPO)): path.read_text(encoding="utf-8") for path in files})
    assert not hits, "private API of a framework or library (use its public API):\n" + "\n".join(map(str, hits))


def test_the_scan_catches_each_kind_of_private_use():
    planted = """
from psycopg import ServerBindingCursor
from django.db.backends.postgresql.psycopg_any import register_tzloader

def save_model(obj, request, serializer, schema, site, holder):
    obj._state.adding = False
    cursor = connection._prepare_cursor(connection.create_cursor())
    user = request._authenticator
    django_request = request._request
    data, errors = serializer._data, serializer._errors
    response = schema._get_response_for_code(None, "200")
    registered = site._registry
    hidden = getattr(holder, "_secret_internal")
    setattr(obj, "_state", None)
    return obj._meta.label, obj._default_manager, os._exit, point._replace(x=1)

def _state(model):  # a project helper of the same name does not make obj._state the project's
    return {}

class Worker:
    def __init__(self):
        self._lock = None
        self._data = []

    def run(self, other):
        return self._lock, other._lock, self._data
"""
    found = {(hit.line, hit.what.split(" (")[0]) for hit in scan({"planted.py": planted})}
    assert found == {
        (2, "import ServerBindingCursor"),
        (3, "import register_tzloader"),
        (6, "._state"),
        (7, "._prepare_cursor"),
        (8, "._authenticator"),
        (9, "._request"),
        (10, "._data"),
        (10, "._errors"),
        (11, "._get_response_for_code"),
        (12, "._registry"),
        (13, 'getattr(..., "_secret_internal")'),
        (14, 'setattr(..., "_state")'),
    }, found

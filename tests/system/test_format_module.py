"""The Science-T2I format has one definition, ``science_t2i/format.py``, free of Django and of the apps.

The importer and exporter (curation) and the ML code all read and write the format through it, so it must be
importable on its own: by ``python -m ml`` without a database, and by curation without curation depending on ml.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("annotation", "curation", "ml", "config", "bench", "tests")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.lineno, node.module or ""))
    return found


def test_the_format_package_imports_neither_django_nor_an_app():
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "science_t2i").rglob("*.py"))
        for line, name in _imported_modules(path)
        if name.split(".")[0] in (*APPS, "django", "rest_framework", "celery")
    ]
    assert not bad, "science_t2i must stand alone:\n" + "\n".join(bad)


def test_it_loads_without_django_or_the_apps():
    code = (
        "import sys, science_t2i.format; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'django', *{APPS!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_importer_and_exporter_take_the_format_from_it_alone():
    users = sorted((ROOT / "curation" / "services" / "importing").glob("*.py")) + sorted(
        (ROOT / "curation" / "services" / "exporting").glob("*.py")
    )
    imported = {name for path in users for _, name in _imported_modules(path)}
    assert "science_t2i.format" in imported
    assert not [name for name in imported if name.split(".")[0] == "ml"]

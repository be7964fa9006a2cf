"""The project stands on its own: no test reads next to the repository.

:func:`guard` installs an audit hook (PEP 578) in the test process that refuses to open or list anything in
the repository's parent folder that is not inside the repository itself, such as a checkout's neighbour
``shared`` folder. Everything else stays readable: the repository (its ``.venv`` included), temporary folders,
the Python installation, caches in the home folder. A data file a test needs is copied into
``tests/support/data/`` with its licence notice instead. ``tests/system/test_stands_alone.py`` checks that the
guard is on and that no tracked file points outside the repository.
"""

from __future__ import annotations

import os
import sys
import tempfile

from tests.support.paths import REPO


class OutsideRepository(PermissionError):
    """A test tried to read a path beside the repository."""


_OPENING_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
_state = {"on": False}


def _allowed_roots() -> tuple[str, ...]:
    """Folders that may happen to sit beside the repository and that tests legitimately read: the temporary
    folder (a checkout under /tmp) and the Python installation."""
    roots = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.realpath(root) for root in roots)


def beside_repository(path) -> bool:
    """Whether ``path`` is inside a folder beside the repository: below the repository's parent, not in the
    repository, not in a hidden folder of the parent (a home folder's ``.cache`` or ``.aws``), not in the
    temporary folder or the Python installation. The parent folder itself is not beside the repository."""
    if isinstance(path, int):  # a file descriptor: already open
        return False
    try:
        text = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    parent = str(REPO.parent)
    if parent == os.path.dirname(parent):  # the repository sits at the file system's root: no neighbours
        return False
    if not text.startswith(parent + os.sep):
        return False
    neighbour = text[len(parent) + 1 :].split(os.sep, 1)[0]
    if neighbour in ("", REPO.name) or neighbour.startswith("."):
        return False
    return not in_allowed_root(text)


def in_allowed_root(path) -> bool:
    """Whether ``path`` is in the temporary folder or the Python installation."""
    text = os.path.abspath(os.fsdecode(path))
    return any(text == root or text.startswith(root + os.sep) for root in _ALLOWED)


_ALLOWED = _allowed_roots()


def _hook(event: str, args: tuple) -> None:
    if event in _OPENING_EVENTS and args and _state["on"] and beside_repository(args[0]):
        raise OutsideRepository(f"tests read only inside the repository ({REPO}), not {os.fsdecode(args[0])}")


def guard() -> None:
    """Refuse reads beside the repository in this process from now on (an audit hook cannot be removed)."""
    if not _state["on"]:
        _state["on"] = True
        sys.addaudithook(_hook)

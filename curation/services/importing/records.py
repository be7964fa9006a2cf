"""What a row becomes: records ready to write (:class:`_Item`, one per explicit/superficial image pair of
a row), the task it names, and the checks of its fields and image paths.

**Tasks.** Parquet: the first non-empty of the columns ``task_code``, ``task``, ``category``, ``law`` is
looked up among the stored tasks by code or name (any case, ``_``/``-`` as spaces). JSONL: its ``task``.
A value that matches no task is a per-row error; a row that names none is an error too unless
``task_default`` is given: a task code, or ``"none"`` to import such rows without a task (never queued until
an admin assigns one). Decided so because a tuple silently filed without a task, or under a wrong one,
is data an admin would have to hunt for.

**Untrusted paths.** This is the platform's importer, for files that may come from anyone: an image path
in a row must be relative and stay inside the folder of the file that names it — absolute paths, ``..``
components and symbolic links pointing outside are per-row errors (``ml.core.data`` itself trusts its
operator's paths). The job and the API only read under ``settings.IMPORT_ROOTS``
(:func:`.job.resolve_import_path`).

**Defaults never change stored tuples.** The scene derived from the split and the default source label
(the file or folder name) are set on *new* tuples only: a version's train split holds complex scenes too,
and re-importing an export must not relabel where a tuple came from. A scene or source given explicitly
(argument, or a row's own ``scene``/``source``) is written like any other field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from annotation.models import PromptTuple, Task, normalise_prompt
from curation.services.importing.base import (
    MAX_PATH_CHARS,
    MAX_PROVENANCE_CHARS,
    MAX_SHORT,
    MAX_TEXT,
    RowError,
    _shown,
)


@dataclass
class _Item:
    """One record ready to write: the upsert_tuple arguments and the two images (or none)."""

    key: tuple[str, int | None]
    fields: dict
    explicit: object | None = None  # ml.core.data.ImageRef
    superficial: object | None = None
    create_only: tuple[str, ...] = ()  # fields that are defaults for a new tuple, never changes to a stored one
    columns: tuple[str, str] = ("explicit_image", "superficial_image")  # the images' names in the input


@dataclass
class _Row:
    file: str
    number: int
    items: list[_Item] = field(default_factory=list)
    error: str | None = None


class _Tasks:
    """Stored tasks by code or name (any case, ``_``/``-`` read as spaces); loaded once per import."""

    def __init__(self):
        from ml.core.data import _task_key

        self._key = _task_key
        self._by_key: dict[str, Task] = {}
        for task in Task.objects.all():
            self._by_key[_task_key(task.code)] = task
            self._by_key[_task_key(task.name)] = task

    def get(self, value: str) -> Task | None:
        return self._by_key.get(self._key(value))


@dataclass(frozen=True)
class _Options:
    source: str
    scene: str | None
    tasks: _Tasks
    task_default: Task | None
    allow_no_task: bool
    source_is_default: bool = False

    def resolve_task(self, values: list[str]) -> Task | None:
        named = [v.strip() for v in values if isinstance(v, str) and v.strip()]
        for value in named:
            task = self.tasks.get(value)
            if task is not None:
                return task
        if named:
            raise RowError(f"unknown task/category {_shown(named[0])}")
        if self.task_default is not None or self.allow_no_task:
            return self.task_default
        raise RowError("the row names no task or category (give a task default to import such rows)")


def _text(value, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _make_item(record, *, task: Task | None, scene: str | None, opts: _Options, provenance: dict,
               subject=None, source=None, explicit=None, superficial=None) -> _Item:
    implicit = _text(record.implicit_prompt, "implicit_prompt", MAX_TEXT)
    if not implicit:
        raise RowError("implicit prompt is missing or empty")
    create_only = []
    if not (opts.scene or scene):
        create_only.append("scene")
    scene = opts.scene or scene or (PromptTuple.Scene.COMPLEX if record.split == "test_C" else PromptTuple.Scene.SIMPLE)
    if not source and opts.source_is_default:
        create_only.append("source")
    size = len(json.dumps(provenance, default=str))
    if size > MAX_PROVENANCE_CHARS:
        raise RowError(f"provenance is {size} characters long as JSON; the limit is {MAX_PROVENANCE_CHARS}")
    if scene not in PromptTuple.Scene.values:
        raise RowError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {_shown(scene)}")
    fields = {
        "implicit_prompt": implicit,
        "explicit_prompt": _text(record.explicit_prompt, "explicit_prompt", MAX_TEXT),
        "superficial_prompt": _text(record.superficial_prompt, "superficial_prompt", MAX_TEXT),
        "subject": _text(subject if subject is not None else record.subject, "subject", MAX_SHORT),
        "source": _text(source, "source", MAX_SHORT) or opts.source,
        "scene": scene,
        "task": task,
        "provenance": provenance,
    }
    return _Item((normalise_prompt(implicit), task.pk if task else None), fields, explicit, superficial,
                 tuple(create_only))


def _safe_image_path(value, folder: Path, column: str) -> None:
    """Refuse image paths that leave ``folder`` (absolute, ``..``, or a link pointing outside)."""
    if not isinstance(value, str) or not value:
        raise RowError(f"{column} must be a non-empty path")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise RowError(f"{column} {_shown(value)}: not a usable path ({len(value)} characters)")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or Path(value).is_absolute() or (len(value) > 1 and value[1] == ":"):
        raise RowError(f"{column} {_shown(value)}: absolute paths are refused; use a path relative to the file")
    if ".." in pure.parts:
        raise RowError(f"{column} {_shown(value)}: paths may not contain '..'")
    base = folder.resolve()
    try:
        inside = (base / value).resolve().is_relative_to(base)
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
        raise RowError(f"{column} {_shown(value)}: cannot be resolved ({exc.__class__.__name__})") from None
    if not inside:
        raise RowError(f"{column} {_shown(value)} leads outside the file's folder")

"""Import prompt files into the catalogue (``manage.py import_prompts``, ``seed_demo --prompts``).

Accepted shapes, told apart by the file's first non-blank character:

* ``[`` — a JSON list, loaded whole (that is its format). Each element is either a *prompt record*
  ``{"prompt": IP, "object": subject}`` (the reference repository's files, e.g.
  ``reality_simple_300.json``) or a *full tuple* (below). Row numbers count elements from 1.
* anything else — JSONL, one full tuple (or prompt record) per line, read line by line so memory
  stays flat however long the file is. Blank lines are ignored; row numbers are line numbers, so a
  file whose first line is broken still gets its errors reported line by line.

Problems of the file as a whole (unreadable, a JSON list that does not parse) are row 0.

A full tuple has ``implicit_prompt`` (required) and optionally ``explicit_prompt``,
``superficial_prompt``, ``task`` (a code such as ``RU`` or a name such as ``Rust``, any case),
``subject``, ``scene`` (simple|complex), ``source`` and ``provenance`` (an object). Unknown keys
are an error rather than silently dropped: a misspelt ``explict_prompt`` would otherwise lose data.

All or nothing: every row is validated first (pass 1) and only a file without a single error is
written (pass 2), in one transaction, through :func:`annotation.services.catalog.upsert_tuple`, so
re-importing a file reports every row as skipped. A dry run takes the same two passes and rolls the
transaction back, so its counts (including duplicates inside the file) are exactly what a real run
would report.

Rows without a task get the one given with ``task=``, or a guess of :mod:`annotation.task_rules`
with ``auto_task=True``, or stay without a task for an admin to assign (counted in
``unassigned_task``; so is a guess whose task an admin has removed). A task written in the row
always wins.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import IntegrityError, transaction

from annotation.models import PromptTuple, Task
from annotation.services import catalog
from annotation.task_rules import guess_task

MAX_TEXT = 2000
MAX_SHORT = 200  # subject and source columns
MAX_LISTED_ERRORS = 1000
TEXT_FIELDS = {"implicit_prompt": MAX_TEXT, "explicit_prompt": MAX_TEXT, "superficial_prompt": MAX_TEXT,
               "subject": MAX_SHORT, "source": MAX_SHORT, "task": MAX_SHORT, "scene": MAX_SHORT}
TUPLE_KEYS = set(TEXT_FIELDS) | {"provenance"}
PROMPT_RECORD_KEYS = {"prompt": "implicit_prompt", "object": "subject"}


class RowError(ValueError):
    """One row cannot be imported; the message says why."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    unassigned_task: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    per_task: Counter = field(default_factory=Counter)

    def add_error(self, row: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"row": row, "error": message})

    def as_dict(self) -> dict:
        """The ``--json`` summary. Past MAX_LISTED_ERRORS, one last entry says how many were not listed."""
        errors = list(self.errors)
        if self.error_count > len(errors):
            errors.append({"row": None, "error": f"... and {self.error_count - len(errors)} more rows with errors"})
        return {"created": self.created, "updated": self.updated, "skipped": self.skipped,
                "errors": errors, "unassigned_task": self.unassigned_task}


@dataclass(frozen=True)
class Defaults:
    """What the command line fills in for rows that do not say."""

    task: Task | None = None
    auto_task: bool = False
    source: str = ""
    scene: str | None = None  # None: new tuples are simple, stored ones keep their scene


def import_prompts(
    path: str | Path,
    *,
    task: str | None = None,
    auto_task: bool = False,
    source: str | None = None,
    scene: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Validate ``path`` completely, then write it in one transaction unless a row has an error.

    Raises :class:`ValueError` for problems of the call itself (unknown ``task``, both ``task`` and
    ``auto_task``, a bad ``scene``). Problems of the file itself (unreadable, not JSON) are
    reported as an error of row 0.
    """
    if task and auto_task:
        raise ValueError("Give either a task or auto_task, not both.")
    if scene is not None and scene not in PromptTuple.Scene.values:
        raise ValueError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {scene!r}.")
    if source is not None and len(source) > MAX_SHORT:
        raise ValueError(f"The source label is {len(source)} characters long; the limit is {MAX_SHORT}.")
    path = Path(path)
    tasks = _TaskLookup()
    defaults = Defaults(
        task=tasks.resolve(task) if task else None,
        auto_task=auto_task,
        source=path.name if source is None else source,
        scene=scene,
    )
    rows = _row_source(path)
    report = ImportReport()
    for number, raw in rows():
        try:
            fields = _clean(raw, defaults, tasks)
        except RowError as exc:
            report.add_error(number, str(exc))
            continue
        report.per_task[fields["task"].code if fields["task"] else None] += 1
    report.unassigned_task = report.per_task[None]
    if report.error_count:
        return report
    try:
        with transaction.atomic():
            for _, raw in rows():
                _, outcome = catalog.upsert_tuple(**_clean(raw, defaults, tasks))
                setattr(report, outcome, getattr(report, outcome) + 1)
            if dry_run:
                transaction.set_rollback(True)
    except IntegrityError as exc:  # a concurrent writer stored one of these prompts first
        raise ValueError(
            f"Another writer changed the catalogue during the import; nothing was written ({exc})."
        ) from exc
    return report


class _TaskLookup:
    """Task by code or name, any case; loaded once per import."""

    def __init__(self):
        self._by_key = {}
        for t in Task.objects.all():
            self._by_key[t.code.casefold()] = t
            self._by_key[t.name.casefold()] = t

    def resolve(self, value: str) -> Task:
        found = self._by_key.get(value.strip().casefold())
        if found is None:
            known = ", ".join(sorted({t.code for t in self._by_key.values()}))
            raise RowError(f"unknown task {value!r}; known codes: {known}")
        return found

    def get(self, code: str) -> Task | None:
        return self._by_key.get(code.casefold())


def _clean(raw: object, defaults: Defaults, tasks: _TaskLookup) -> dict:
    """One row as keyword arguments of ``upsert_tuple``, or :class:`RowError`."""
    if isinstance(raw, RowError):
        raise raw
    if not isinstance(raw, dict):
        raise RowError(f"expected a JSON object, got {_type_name(raw)}")
    if "prompt" in raw and "implicit_prompt" not in raw:
        unknown = set(raw) - set(PROMPT_RECORD_KEYS)
        raw = {PROMPT_RECORD_KEYS[k]: v for k, v in raw.items() if k in PROMPT_RECORD_KEYS}
    else:
        unknown = set(raw) - TUPLE_KEYS
    if unknown:
        raise RowError(f"unknown field(s) {', '.join(sorted(unknown))}")
    text = {name: _text(raw, name, limit) for name, limit in TEXT_FIELDS.items()}
    if not text["implicit_prompt"]:
        raise RowError("implicit prompt is missing or empty")
    scene = text["scene"].lower() or defaults.scene
    if scene is not None and scene not in PromptTuple.Scene.values:
        raise RowError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {text['scene']!r}")
    provenance = raw.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise RowError(f"provenance must be an object, not {_type_name(provenance)}")
    if text["task"]:
        task = tasks.resolve(text["task"])
    elif defaults.auto_task:
        guessed = guess_task(text["implicit_prompt"])
        task = tasks.get(guessed) if guessed else None
    else:
        task = defaults.task
    return {
        "implicit_prompt": text["implicit_prompt"],
        "explicit_prompt": text["explicit_prompt"],
        "superficial_prompt": text["superficial_prompt"],
        "subject": text["subject"],
        "source": text["source"] or defaults.source[:MAX_SHORT],  # a file name can be longer
        "scene": scene,
        "provenance": provenance,
        "task": task,
    }


def _text(raw: dict, name: str, limit: int) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string, not {_type_name(value)}")
    value = value.strip()
    if len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _row_source(path: Path) -> Callable[[], Iterator[tuple[int, object]]]:
    """A function that yields ``(row number, parsed row or RowError)``; callable once per pass.

    JSONL is re-read from disk on each pass; a JSON list is parsed once and kept.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        problem = RowError(f"cannot read {path}: {exc.strerror or exc}")
        return lambda: iter([(0, problem)])
    if head.startswith(b"["):
        rows = _load_json_list(path)
        return lambda: iter(rows)
    return lambda: _read_jsonl(path)


def _load_json_list(path: Path) -> list[tuple[int, object]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return [(0, RowError(f"the file is not UTF-8 ({exc})"))]
    except json.JSONDecodeError as exc:
        return [(0, RowError(f"invalid JSON: {exc}"))]
    if not isinstance(data, list):
        return [(0, RowError(f"expected a JSON list, got {_type_name(data)}"))]
    return list(enumerate(data, start=1))


def _read_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError as exc:
                yield number, RowError(f"the line is not UTF-8 ({exc})")
                continue
            if not text:
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"invalid JSON: {exc}")

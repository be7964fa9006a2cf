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

Rows without a task get, in this order: the one given with ``task=``; with
``merge_same_prompt=True``, the task of the one tuple that has the same prompt with a task (stored,
or another row of the file naming its task: the row *joins* that tuple; several tasks with that
prompt: not merged, reported); a guess of :mod:`annotation.task_rules` with ``auto_task=True``; or
none, for an admin to assign. A task written in the row always wins. An existing tuple with the
very same prompt and a task is better evidence than a keyword guess, hence the order.

The report (``as_dict``, the command's ``--json``): ``created``, ``updated``, ``skipped``,
``errors``, ``unassigned_task`` (how many rows end up without a task; so is a guess whose task an
admin has removed), ``unassigned`` (``count`` and the first ``MAX_LISTED_ROWS`` such rows: file,
row, prompt, reason) and ``same_prompt``: every prompt that comes without a task while a tuple (or
a row of the file) has it with one — without ``merge_same_prompt`` such a row makes a second tuple
next to the tasked one (``count``, ``rows``, ``merged``, and per prompt: the prompt, its first row,
the stored tuples with a task (id and code), the file's rows naming a task, and what was done).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction

from annotation.models import PROMPT_MAX_CHARS, PromptTuple, Task, normalise_prompt
from annotation.services import catalog
from annotation.task_rules import guess_task

MAX_TEXT = PROMPT_MAX_CHARS
MAX_SHORT = 200  # subject and source columns
MAX_LISTED_ERRORS = 1000
MAX_LISTED_ROWS = 100  # entries of the unassigned and same_prompt listings
MAX_LISTED_PROMPT = 200
TEXT_FIELDS = {
    "implicit_prompt": MAX_TEXT,
    "explicit_prompt": MAX_TEXT,
    "superficial_prompt": MAX_TEXT,
    "subject": MAX_SHORT,
    "source": MAX_SHORT,
    "task": MAX_SHORT,
    "scene": MAX_SHORT,
}
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
    unassigned_rows: list[dict] = field(default_factory=list)  # the first rows without a task
    same_prompt: dict = field(default_factory=lambda: {"count": 0, "rows": 0, "merged": 0, "prompts": []})

    def add_error(self, row: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"row": row, "error": message})

    def as_dict(self) -> dict:
        """The ``--json`` summary. Past MAX_LISTED_ERRORS, one last entry says how many were not listed."""
        errors = list(self.errors)
        if self.error_count > len(errors):
            errors.append({"row": None, "error": f"... and {self.error_count - len(errors)} more rows with errors"})
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": errors,
            "unassigned_task": self.unassigned_task,
            "unassigned": {"count": self.unassigned_task, "rows": list(self.unassigned_rows)},
            "same_prompt": {**self.same_prompt, "prompts": list(self.same_prompt["prompts"])},
        }


@dataclass(frozen=True)
class Defaults:
    """What the command line fills in for rows that do not say."""

    task: Task | None = None
    auto_task: bool = False
    source: str = ""
    scene: str | None = None  # None: new tuples are simple, stored ones keep their scene
    merge_same_prompt: bool = False


def import_prompts(
    path: str | Path,
    *,
    task: str | None = None,
    auto_task: bool = False,
    source: str | None = None,
    scene: str | None = None,
    dry_run: bool = False,
    merge_same_prompt: bool = False,
) -> ImportReport:
    """Validate ``path`` completely, then write it in one transaction unless a row has an error.

    Raises :class:`ValueError` for problems of the call itself (unknown ``task``, both ``task`` and
    ``auto_task``, a bad ``scene``). Problems of the file itself (unreadable, not JSON) are
    reported as an error of row 0. ``merge_same_prompt``: see the module docstring.
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
        merge_same_prompt=merge_same_prompt,
    )
    rows = _row_source(path)
    report = ImportReport()
    named: dict[str, dict[int, int]] = {}  # normalised prompt → {task id: first row naming it}
    taskless: dict[str, list] = {}  # normalised prompt → [first row, prompt, rows, guessed task or None]
    unassigned: list[tuple[str, int, str, str]] = []  # (normalised, row, prompt, reason), the first
    for number, raw in rows():
        try:
            fields, why = _clean(raw, defaults, tasks)
        except RowError as exc:
            report.add_error(number, str(exc))
            continue
        key = normalise_prompt(fields["implicit_prompt"])
        if why is None:  # the row or the task flag gave the task
            if fields["task"] is not None:
                named.setdefault(key, {}).setdefault(fields["task"].pk, number)
        else:
            entry = taskless.setdefault(key, [number, fields["implicit_prompt"], 0, fields["task"]])
            entry[2] += 1
            if fields["task"] is None and len(unassigned) < MAX_LISTED_ERRORS:
                unassigned.append((key, number, fields["implicit_prompt"], why))
        report.per_task[fields["task"].code if fields["task"] else None] += 1
    merges = _same_prompt(report, named, taskless, tasks, merge=merge_same_prompt)
    for key, merged_task in merges.items():  # merged rows have the tuple's task, not a guess or none
        first_row = taskless[key]
        report.per_task[first_row[3].code if first_row[3] else None] -= first_row[2]
        report.per_task[merged_task.code] += first_row[2]
    report.per_task = Counter({code: n for code, n in report.per_task.items() if n > 0})
    report.unassigned_task = report.per_task[None]
    report.unassigned_rows = [
        {"file": path.name, "row": number, "prompt": _listed(prompt), "reason": reason}
        for key, number, prompt, reason in unassigned
        if key not in merges
    ][:MAX_LISTED_ROWS]
    if report.error_count:
        return report
    try:
        with transaction.atomic():
            for _, raw in rows():
                fields, why = _clean(raw, defaults, tasks)
                if why is not None and (task := merges.get(normalise_prompt(fields["implicit_prompt"]))):
                    fields["task"] = task  # merge_same_prompt: join the tuple with this prompt and a task
                _, outcome = catalog.upsert_tuple(**fields)
                setattr(report, outcome, getattr(report, outcome) + 1)
            if dry_run:
                transaction.set_rollback(True)
    except IntegrityError as exc:  # a concurrent writer stored one of these prompts first
        raise ValueError(
            f"Another writer changed the catalogue during the import; nothing was written ({exc})."
        ) from exc
    return report


def _same_prompt(report: ImportReport, named: dict, taskless: dict, tasks: _TaskLookup, *, merge: bool) -> dict:
    """Fill ``report.same_prompt`` (see the module docstring); return the merges: normalised prompt → task."""
    stored: dict[str, dict[int, int]] = {}  # normalised → {task id: tuple id}
    prompts = list(taskless)
    for start in range(0, len(prompts), 500):
        found = (
            PromptTuple.objects.filter(implicit_normalised__in=prompts[start : start + 500], task__isnull=False)
            .order_by("pk")
            .values_list("implicit_normalised", "task_id", "pk")
        )
        for key, task_id, pk in found:
            stored.setdefault(key, {}).setdefault(task_id, pk)
    merges: dict = {}
    same: dict[str, Any] = {"count": 0, "rows": 0, "merged": 0, "prompts": []}
    for key, (row, prompt, n_rows, fallback) in taskless.items():
        in_db, in_file = stored.get(key, {}), named.get(key, {})
        task_ids = set(in_db) | set(in_file)
        if not task_ids or (fallback is not None and fallback.pk in task_ids):
            continue  # no tuple with a task, or the guess is its task: the rows land in that tuple anyway
        entry = {
            "prompt": _listed(prompt),
            "row": row,
            "rows": n_rows,
            "existing": [{"tuple": pk, "task": tasks.code(task_id)} for task_id, pk in in_db.items()],
            "in_file": [{"task": tasks.code(task_id), "row": first} for task_id, first in in_file.items()],
        }
        task = tasks.by_id.get(next(iter(task_ids))) if merge and len(task_ids) == 1 else None
        if task is not None:
            merges[key] = task
            same["merged"] += 1
            entry |= {
                "merged": True,
                "task": task.code,
                "tuple": in_db.get(task.pk),
                "action": "merged: the rows join the tuple with this prompt and task",
            }
        else:
            entry |= {
                "merged": False,
                "task": fallback.code if fallback else None,
                "tuple": None,
                "action": (
                    "not merged: several tasks have this prompt"
                    if len(task_ids) > 1
                    else "not merged (merge_same_prompt is off): a tuple of its own"
                ),
            }
        same["count"] += 1
        same["rows"] += n_rows
        if len(same["prompts"]) < MAX_LISTED_ROWS:
            same["prompts"].append(entry)
    report.same_prompt = same
    return merges


def _listed(prompt: str) -> str:
    return prompt if len(prompt) <= MAX_LISTED_PROMPT else prompt[:MAX_LISTED_PROMPT] + "..."


class _TaskLookup:
    """Task by code or name, any case; loaded once per import."""

    def __init__(self):
        self._by_key = {}
        self.by_id = {}
        for t in Task.objects.all():
            self._by_key[t.code.casefold()] = t
            self._by_key[t.name.casefold()] = t
            self.by_id[t.pk] = t

    def code(self, task_id: int) -> str | None:
        task = self.by_id.get(task_id)
        return task.code if task else None

    def resolve(self, value: str) -> Task:
        found = self._by_key.get(value.strip().casefold())
        if found is None:
            known = ", ".join(sorted({t.code for t in self._by_key.values()}))
            raise RowError(f"unknown task {value!r}; known codes: {known}")
        return found

    def get(self, code: str) -> Task | None:
        return self._by_key.get(code.casefold())


def _clean(raw: object, defaults: Defaults, tasks: _TaskLookup) -> tuple[dict, str | None]:
    """One row as keyword arguments of ``upsert_tuple``, or :class:`RowError`; and, for a row that named
    no task and got none from the task flag, why it has the task it has (``""`` when guessed), else None."""
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
    why = None
    task: Task | None
    if text["task"]:
        task = tasks.resolve(text["task"])
    elif defaults.task is not None:
        task = defaults.task
    elif defaults.auto_task:
        guessed = guess_task(text["implicit_prompt"])
        task = tasks.get(guessed) if guessed else None
        why = (
            ""
            if task
            else (
                "no task rule matched the prompt"
                if not guessed
                else f"the rules guessed {guessed}, which the catalogue does not have"
            )
        )
    else:
        task, why = None, "the row names no task (no --task or --auto-task)"
    return {
        "implicit_prompt": text["implicit_prompt"],
        "explicit_prompt": text["explicit_prompt"],
        "superficial_prompt": text["superficial_prompt"],
        "subject": text["subject"],
        "source": text["source"] or defaults.source[:MAX_SHORT],  # a file name can be longer
        "scene": scene,
        "provenance": provenance,
        "task": task,
    }, why


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
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


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


def listing_lines(unassigned: dict, same_prompt: dict) -> list[str]:
    """The report's listings of rows without a task and of prompts met with and without one, as text
    (``import_prompts`` and ``import_dataset``)."""
    lines = []
    if unassigned["count"]:
        lines.append(
            f"{unassigned['count']} row(s) without a task"
            + (f"; the first {len(unassigned['rows'])}:" if unassigned["rows"] else ":")
        )
        lines += [
            f"  {r.get('file') or ''} row {r['row']}: {r['prompt']!r} ({r['reason']})" for r in unassigned["rows"]
        ]
    if same_prompt["count"]:
        lines.append(
            f"{same_prompt['count']} prompt(s) come without a task here but have one elsewhere "
            f"({same_prompt['merged']} merged):"
        )
        for entry in same_prompt["prompts"]:
            where = [f"tuple {e['tuple']} ({e['task']})" for e in entry["existing"]]
            where += [f"row {e['row']} ({e['task']})" for e in entry["in_file"]]
            lines.append(f"  row {entry['row']}: {entry['prompt']!r}, also {', '.join(where)}: {entry['action']}")
    return lines

"""Which task a row's tuple gets, and the listings of rows without one.

**Tasks.** A row's own task columns win: parquet ``task_code``, then ``task`` (our export's), JSONL ``task``
— a code or a name of a stored task (any case, ``_``/``-`` as spaces), else a per-row error. Otherwise the
grouping columns ``category`` and ``law`` are read *by value* (:func:`science_t2i.format.read_grouping`, and the
stored tasks and disciplines, so tasks and disciplines an admin added count too): a task code or name in
either column is the task; a discipline name only says which discipline the row belongs to; a value that is
neither is an error ("unknown task/category ..."), and every such message says what each column held. A
row that names no task (nothing, or only a discipline) gets, in this order:

1. the ``task_default`` code, when one is given;
2. with ``merge_same_prompt``: the task of the one tuple that has the same prompt with a task (stored, or
   another row of the input naming its task) — the row *joins* that tuple, as if it had named the task.
   Several tasks with that prompt: not merged, reported;
3. with ``auto_task``: the guess of :func:`annotation.task_rules.guess_task`, if it belongs to the
   discipline the row names (when it names one); else the row has no task, and the reason is reported;
4. no task: imported so with ``task_default="none"``; otherwise the row is an error.

Decided so because a tuple silently filed without a task, or under a wrong one, is data an admin would have
to hunt for; an existing tuple with the very same prompt and a task is better evidence than a keyword guess.

**Reported.** ``unassigned``: how many rows end up without a task (imported so, or refused for it), and
the first of them with file, row, prompt and why. ``same_prompt``: every prompt that comes without a task
while a tuple (or a row of the input) has it with one — without ``merge_same_prompt`` such a row makes a
second tuple next to the tasked one, which is worth knowing. Each entry: the prompt, the first row, how
many rows, the stored tuples with a task (id and task code), the input's rows naming a task, and what was
done (``merged`` into which task and tuple, or why not).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from annotation.models import PromptTuple, Task
from annotation.task_rules import guess_task
from curation.services.importing.base import (
    MAX_LISTED_ERRORS,
    MAX_LISTED_ROWS,
    DatasetImportReport,
    RowError,
    listed_prompt,
    shown,
)
from science_t2i.format import discipline_of, read_grouping, task_key

GROUPING_COLUMNS = ("category", "law")
_NO_TASK_HELP = (
    "give a task default (a task code, or 'none' to import such rows without a task), auto_task, or merge_same_prompt"
)


class Tasks:
    """Stored tasks and disciplines by code, name or slug (any case, ``_``/``-`` read as spaces); loaded
    once per import."""

    def __init__(self):
        from annotation.models import Discipline

        self._key = task_key
        self._by_key: dict[str, Task] = {}
        self.by_id: dict[int, Task] = {}
        for task in Task.objects.select_related("discipline"):
            self._by_key[task_key(task.code)] = task
            self._by_key[task_key(task.name)] = task
            self.by_id[task.pk] = task
        self._disciplines: dict[str, str] = {}
        for discipline in Discipline.objects.all():
            self._disciplines[task_key(discipline.slug)] = discipline.slug
            self._disciplines[task_key(discipline.name)] = discipline.slug

    def get(self, value: str) -> Task | None:
        return self._by_key.get(self._key(value))

    def discipline(self, value: str) -> str:
        """The slug of a stored discipline named by ``value`` (slug or name); else the seeded one; else ""."""
        return self._disciplines.get(self._key(value)) or discipline_of(value)


@dataclass
class TaskChoice:
    """The task of a row's tuple, as pass 1 decided it (a merge may still give a task-less row one)."""

    task: Task | None
    taskless: bool = False  # the row named no task and no task default applied
    reason: str = ""  # why the row has no task (or why the guess was not taken)
    pending: str = ""  # with merge_same_prompt: the error reported unless a merge gives the row a task


def choose_task(
    opts, named: list[tuple[str, object]], grouping: dict[str, object], prompt: str, discipline_hint: object = None
) -> TaskChoice:
    """The task of one row (see the module docstring): ``named`` are its own task columns in order,
    ``grouping`` its ``category``/``law`` values, ``discipline_hint`` our export's ``discipline`` column.
    Raises :class:`RowError`."""
    tasks: Tasks = opts.tasks
    for column, value in named:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            raise RowError(f"{column} must be a string")
        task = tasks.get(value)
        if task is None:
            raise RowError(
                f"unknown task/category {shown(value.strip())} (column {column}: no stored task has that code or name)"
            )
        return TaskChoice(task)
    for column, value in grouping.items():
        if value is not None and not isinstance(value, str):
            raise RowError(f"{column} must be a string")
    seeded = read_grouping(grouping)[2]
    task, discipline, held, unknown = None, "", [], []
    for column in GROUPING_COLUMNS:
        value = grouping.get(column)
        if seeded.get(column, "empty") == "empty":
            if column in grouping:
                held.append(f"{column}: empty")
            continue
        text = str(value).strip()  # a string: checked above
        found = tasks.get(text)
        if found is not None:
            task = task or found
            held.append(f"{column} {shown(text)}: a task")
        elif slug := tasks.discipline(text):
            discipline = discipline or slug
            held.append(f"{column} {shown(text)}: a discipline")
        else:
            what = (
                "a seeded task the catalogue no longer has"
                if seeded[column] == "task"
                else "neither a task nor a discipline"
            )
            unknown.append(text)
            held.append(f"{column} {shown(text)}: {what}")
    if task is not None:
        return TaskChoice(task)
    where = "; ".join(held) or "no task or grouping column"
    if unknown:
        raise RowError(f"unknown task/category {shown(unknown[0])} ({where})")
    if opts.task_default is not None:
        return TaskChoice(opts.task_default)
    if not discipline and isinstance(discipline_hint, str) and discipline_hint.strip():
        discipline = tasks.discipline(discipline_hint)
    choice = TaskChoice(None, taskless=True)
    if opts.auto_task:
        code = guess_task(prompt)
        guessed = tasks.get(code) if code else None
        if code is None:
            choice.reason = "no task rule matched the prompt"
        elif guessed is None:
            choice.reason = f"the rules guessed {code}, which the catalogue does not have"
        elif discipline and guessed.discipline.slug != discipline:
            choice.reason = (
                f"the rules guessed {guessed.code} ({guessed.discipline.slug}), but the row names "
                f"the discipline {discipline}"
            )
        else:
            choice.task = guessed
            return choice
    else:
        choice.reason = f"the row names no task ({where})"
    if opts.allow_no_task:
        return choice
    message = f"the row names no task ({where})"
    if opts.auto_task:
        message += f" and {choice.reason}"
    choice.pending = f"{message}; {_NO_TASK_HELP}"  # an error unless a merge gives the row a task (.checking)
    return choice


def _digest(normalised: str) -> bytes:
    return hashlib.blake2b(normalised.encode(), digest_size=16).digest()


@dataclass
class _Taskless:
    prompt: str
    file: str
    row: int
    rows: int = 0
    task: Task | None = None  # what the row gets without a merge (a guess, or none)


@dataclass
class TaskTracker:
    """Pass 1's notes for the task listings: which prompts came with a task (digests only: memory stays
    small), which came without, and the rows left without a task. :meth:`resolve` turns them into the
    merges of pass 2 and the report's ``unassigned`` and ``same_prompt``."""

    merge: bool = False
    named: dict = field(default_factory=dict)  # digest → {task id: (file, row)}, first row per task
    taskless: dict = field(default_factory=dict)  # normalised prompt → _Taskless, first seen first
    unassigned: Counter = field(default_factory=Counter)  # normalised prompt → rows without a task
    unassigned_rows: list = field(default_factory=list)  # (normalised, file, row, prompt, reason), the first
    pending: Counter = field(default_factory=Counter)  # normalised prompt → rows refused unless merged
    pending_rows: list = field(default_factory=list)  # (normalised, file, row, message), the first

    def add(self, file: str, number: int, choice: TaskChoice | None, normalised: str, prompt: str) -> None:
        if choice is None:
            return
        if not choice.taskless:
            assert choice.task is not None  # a row with a task is not taskless
            self.named.setdefault(_digest(normalised), {}).setdefault(choice.task.pk, (file, number))
            return
        entry = self.taskless.setdefault(normalised, _Taskless(prompt, file, number, task=choice.task))
        entry.rows += 1
        if choice.task is None:
            self.unassigned[normalised] += 1
            if len(self.unassigned_rows) < MAX_LISTED_ERRORS:
                self.unassigned_rows.append((normalised, file, number, prompt, choice.reason))
        if choice.pending and self.merge:  # without merges, pass 1 reports the row's error at once
            self.pending[normalised] += 1
            if len(self.pending_rows) < MAX_LISTED_ERRORS:
                self.pending_rows.append((normalised, file, number, choice.pending))

    def resolve(self, tasks: Tasks, report: DatasetImportReport) -> dict[str, Task]:
        """Fill ``report.unassigned`` and ``report.same_prompt``, report the rows still without a task that
        need one, and return the merges: normalised prompt → the task its task-less rows join."""
        stored: dict[str, dict[int, int]] = {}  # normalised → {task id: tuple id}
        prompts = list(self.taskless)
        for start in range(0, len(prompts), 500):
            found = (
                PromptTuple.objects.filter(implicit_normalised__in=prompts[start : start + 500], task__isnull=False)
                .order_by("pk")
                .values_list("implicit_normalised", "task_id", "pk")
            )
            for normalised, task_id, pk in found:
                stored.setdefault(normalised, {}).setdefault(task_id, pk)
        merges: dict[str, Task] = {}
        same: dict[str, Any] = {"count": 0, "rows": 0, "merged": 0, "prompts": []}
        for normalised, entry in self.taskless.items():
            in_db = stored.get(normalised, {})
            in_file = self.named.get(_digest(normalised), {})
            task_ids = set(in_db) | set(in_file)
            if not task_ids or (entry.task is not None and entry.task.pk in task_ids):
                continue  # no tuple with a task, or the guess is its task: the rows land in that tuple anyway
            listed = {
                "prompt": listed_prompt(entry.prompt),
                "file": entry.file,
                "row": entry.row,
                "rows": entry.rows,
                "existing": [{"tuple": pk, "task": _code(tasks, task_id)} for task_id, pk in in_db.items()],
                "in_file": [
                    {"task": _code(tasks, task_id), "file": file, "row": row}
                    for task_id, (file, row) in in_file.items()
                ],
            }
            task = tasks.by_id.get(next(iter(task_ids))) if self.merge and len(task_ids) == 1 else None
            if task is not None:
                merges[normalised] = task
                listed |= {
                    "merged": True,
                    "task": task.code,
                    "tuple": in_db.get(task.pk),
                    "action": "merged: the rows join the tuple with this prompt and task",
                }
                same["merged"] += 1
            else:
                listed |= {
                    "merged": False,
                    "task": entry.task.code if entry.task else None,
                    "tuple": None,
                    "action": (
                        "not merged: several tasks have this prompt"
                        if len(task_ids) > 1
                        else "not merged (merge_same_prompt is off): a tuple of its own"
                    ),
                }
            same["count"] += 1
            same["rows"] += entry.rows
            if len(same["prompts"]) < MAX_LISTED_ROWS:
                same["prompts"].append(listed)
        report.same_prompt = same
        report.unassigned = {
            "count": sum(n for normalised, n in self.unassigned.items() if normalised not in merges),
            "rows": [
                {"file": file, "row": row, "prompt": listed_prompt(prompt), "reason": reason}
                for normalised, file, row, prompt, reason in self.unassigned_rows
                if normalised not in merges
            ][:MAX_LISTED_ROWS],
        }
        refused = sum(n for normalised, n in self.pending.items() if normalised not in merges)
        if refused:
            refusals = [
                (file, row, message) for normalised, file, row, message in self.pending_rows if normalised not in merges
            ]
            for file, row, message in refusals:
                report.add_error(file, row, message)
            report.error_count += refused - len(refusals)
        return merges


def _code(tasks: Tasks, task_id: int) -> str | None:
    task = tasks.by_id.get(task_id)
    return task.code if task else None

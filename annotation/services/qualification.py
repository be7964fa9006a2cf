"""Qualification sets: the gold pairs an annotator must answer before the queue serves them a task's other pairs.

A task's qualification set is its gold pairs with ``Pair.is_qualification`` (set through
:func:`annotation.services.catalog.set_pair_qualification`, by :mod:`curation.services.gold`). An
annotator's state on a task with a set (none when the task has no set):

* ``pending``: no :class:`~annotation.models.Qualification` row yet; the queue serves them only the
  set's pairs they have not judged (:mod:`annotation.services.queue`);
* ``passed``: the row says so; the task is served as if it had no set;
* ``failed``: the task serves them nothing.

Their judgements are assessed (``record``) by :mod:`curation.services.gold`, which knows the gold answers,
once they have answered every pair of the set; an admin may decide instead (``decide``: let pass, or fail),
and such a decision is not reassessed by later judgements. There is no reset: an answer, once given, cannot
be given again blind, so a retry is the admin's decision.

Only this module writes Qualification rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.utils import timezone

from annotation import roles
from annotation.models import Judgement, Pair, Qualification, Task
from annotation.services import audit

PENDING, PASSED, FAILED = "pending", "passed", "failed"


def _state(row: Qualification | None) -> dict:
    if row is None:
        return {"state": PENDING}
    return {
        "state": PASSED if row.passed else FAILED,
        "correct": row.correct,
        "answered": row.answered,
        "decided_by": row.decided_by_id,
    }


def record(user, task: Task, *, correct: int, answered: int, passed: bool) -> Qualification:
    """The automatic assessment of ``user`` on ``task`` (an upsert). Called by :mod:`curation.services.gold`
    under the judged pair's lock; the caller writes the audit event (``qualification.passed`` / ``failed``)."""
    row, _ = Qualification.objects.update_or_create(
        user=user,
        task=task,
        defaults={
            "passed": passed,
            "correct": correct,
            "answered": answered,
            "decided_at": timezone.now(),
            "decided_by": None,
        },
    )
    return row


def withdraw(user, task: Task) -> bool:
    """Delete an automatic assessment that no longer holds (an undo took back one of its answers): the
    annotator is pending again. An admin's decision stays. Returns whether a row was deleted."""
    deleted, _ = Qualification.objects.filter(user=user, task=task, decided_by__isnull=True).delete()
    return bool(deleted)


def row_of(user, task: Task) -> Qualification | None:
    return Qualification.objects.filter(user=user, task=task).first()


def decide(admin, user, task: Task, passed: bool) -> Qualification:
    """An admin lets ``user`` work on ``task`` (``passed``) or stops them, whatever their answers; audited
    (``qualification.decided``). Their answers so far are kept in the counters."""
    if not roles.is_admin(admin):
        raise PermissionDenied("Only admins decide qualifications.")
    before = row_of(user, task)
    correct, answered = (before.correct, before.answered) if before else (0, answered_and_size(user, task)[0])
    row, _ = Qualification.objects.update_or_create(
        user=user,
        task=task,
        defaults={
            "passed": passed,
            "correct": correct,
            "answered": answered,
            "decided_at": timezone.now(),
            "decided_by": admin,
        },
    )
    audit.record(
        admin,
        "qualification.decided",
        user,
        before={"task": task.code, **_state(before)},
        after={"task": task.code, **_state(row)},
    )
    return row


def set_pairs(task: Task):
    """The pairs of the task's qualification set that are served (not retired)."""
    return Pair.objects.filter(tuple__task=task, is_qualification=True).exclude(status=Pair.Status.RETIRED)


def answered_and_size(user, task: Task) -> tuple[int, int]:
    """How many of the set's pairs ``user`` has judged, and the set's size."""
    pairs = set_pairs(task)
    return Judgement.objects.filter(annotator=user, pair__in=pairs).count(), pairs.count()


@dataclass(frozen=True)
class Progress:
    """An annotator's qualification on one task, as their pages show it (never which pairs, nor answers)."""

    state: str  # PENDING, PASSED or FAILED
    answered: int
    size: int
    correct: int = 0


def progress_of(user, task_ids) -> dict[int, Progress]:
    """Per task of ``task_ids`` that has a qualification set: the annotator's progress. Two queries."""
    sets = dict(
        Pair.objects.filter(tuple__task_id__in=task_ids, is_qualification=True)
        .exclude(status=Pair.Status.RETIRED)
        .order_by()
        .values_list("tuple__task_id")
        .annotate(size=Count("id"))
        .values_list("tuple__task_id", "size")
    )
    if not sets:
        return {}
    answered = dict(
        Judgement.objects.filter(annotator=user, pair__is_qualification=True, pair__tuple__task_id__in=list(sets))
        .exclude(pair__status=Pair.Status.RETIRED)
        .order_by()
        .values_list("pair__tuple__task_id")
        .annotate(n=Count("id"))
        .values_list("pair__tuple__task_id", "n")
    )
    rows = {row.task_id: row for row in Qualification.objects.filter(user=user, task_id__in=list(sets))}
    out = {}
    for task_id, size in sets.items():
        row = rows.get(task_id)
        if row is None:
            out[task_id] = Progress(PENDING, answered.get(task_id, 0), size)
        else:
            out[task_id] = Progress(PASSED if row.passed else FAILED, row.answered, size, row.correct)
    return out


@dataclass(frozen=True)
class AnnotatorRow:
    user: object
    progress: Progress
    decided_by: str


def task_overview(task: Task) -> list[AnnotatorRow]:
    """Every annotator who may work on ``task`` (by task or discipline expertise) with their qualification
    on it, by username; for the admin's guide page."""
    users = (
        get_user_model()
        .objects.filter(groups__name=roles.ANNOTATOR)
        .filter(Q(expertise__tasks=task) | Q(expertise__disciplines=task.discipline_id))
        .distinct()
        .order_by("username")
    )
    size = set_pairs(task).count()
    rows = {row.user_id: row for row in Qualification.objects.filter(task=task).select_related("decided_by")}
    answered = dict(
        Judgement.objects.filter(pair__in=set_pairs(task))
        .order_by()
        .values_list("annotator_id")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "n")
    )
    out = []
    for user in users:
        row = rows.get(user.pk)
        if row is None:
            progress = Progress(PENDING, answered.get(user.pk, 0), size)
            decided_by = ""
        else:
            progress = Progress(PASSED if row.passed else FAILED, row.answered, size, row.correct)
            decided_by = row.decided_by.get_username() if row.decided_by else ""
        out.append(AnnotatorRow(user, progress, decided_by))
    return out


def assessed_user_ids(task: Task) -> list[int]:
    """Annotators with an assessment (or an admin's decision) on ``task``."""
    return list(Qualification.objects.filter(task=task).values_list("user_id", flat=True))

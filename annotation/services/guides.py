"""Task guides: what counts as correct in a task, the reasons an annotator may give, and worked examples.

Writes :class:`~annotation.models.TaskGuide` and :class:`~annotation.models.GuideExample` rows. The caller
checks who may (admins: ``curation/views_guides.py``); these functions check what may be written.

Worked examples reveal which image is right, so a pair that is one must never be judged again, nor be gold:

* it can become an example only while it takes no judgements (status ``complete`` or ``retired``, not gold);
* while it is one, nothing reopens it: :func:`annotation.services.catalog.set_pair_k` and
  ``set_pair_retired`` refuse to make it ``open``, ``set_pair_gold`` refuses to make it gold, and an undo of a
  judgement of it is refused (:func:`annotation.services.queue.undo_last_judgement`). All of them check
  :func:`is_example` under the pair's row lock, which :func:`add_example` takes too.

So the queue (which serves only open pairs, and gold pairs) never serves an example, and its hot path needs
no extra check. Which image is right is the caller's decision (``curation.services.consensus``: a decided
pair), stored with the example so that the annotation app can show it without curation.
"""

from __future__ import annotations

from django.db import transaction

from annotation import roles
from annotation.models import (
    EXAMPLE_NOTE_MAX_CHARS,
    GUIDE_MAX_CHARS,
    GUIDE_MAX_EXAMPLES,
    GUIDE_MAX_REASONS,
    REASON_MAX_CHARS,
    GuideExample,
    Pair,
    Task,
    TaskGuide,
)
from annotation.services import audit
from annotation.services.queue_sql import annotator_state


class GuideError(ValueError):
    """What the guide's forms show to the admin: the change was refused, and why."""


def readable_task(user, code: str) -> Task | None:
    """The task, if ``user`` may read its guide: reviewers and admins any, annotators those of their
    expertise; ``None`` otherwise (callers answer 404, so a code outside the expertise reveals nothing)."""
    task = Task.objects.select_related("discipline").filter(code=code[:8]).first()
    if task is None or roles.is_reviewer(user):
        return task
    if roles.is_annotator(user) and task.pk in annotator_state(user.pk, task=None, discipline=None)[2]:
        return task
    return None


def guide_of(task: Task) -> TaskGuide:
    """The task's guide, unsaved and empty when it has none."""
    return TaskGuide.objects.filter(task=task).first() or TaskGuide(task=task)


def clean_reasons(lines: list[str]) -> list[str]:
    """The reasons as stored: stripped, without blanks and repeats, at most GUIDE_MAX_REASONS of at most
    REASON_MAX_CHARS characters each (GuideError otherwise)."""
    reasons: list[str] = []
    for line in lines:
        text = " ".join(str(line).split())
        if not text or text in reasons:
            continue
        if len(text) > REASON_MAX_CHARS:
            raise GuideError(f"A reason has at most {REASON_MAX_CHARS} characters: {text[:20]}…")
        reasons.append(text)
    if len(reasons) > GUIDE_MAX_REASONS:
        raise GuideError(f"A task has at most {GUIDE_MAX_REASONS} reasons.")
    return reasons


def save_guide(actor, task: Task, *, body: str, reasons: list[str]) -> TaskGuide:
    """Create or change the task's guide; records ``guide.changed`` when something changed."""
    if len(body) > GUIDE_MAX_CHARS:
        raise GuideError(f"A guide has at most {GUIDE_MAX_CHARS} characters.")
    cleaned = clean_reasons(reasons)
    with transaction.atomic():
        guide = TaskGuide.objects.select_for_update().filter(task=task).first() or TaskGuide(task=task)
        before = {"body": guide.body, "reasons": list(guide.reasons)} if guide.pk else None
        if before == {"body": body, "reasons": cleaned}:
            return guide
        guide.body, guide.reasons = body, cleaned
        guide.updated_by = actor if getattr(actor, "pk", None) else None
        guide.save()
        audit.record(actor, "guide.changed", guide, before=before, after={"body": body, "reasons": cleaned})
        return guide


def is_example(pair_id: int) -> bool:
    """Whether the pair is a worked example of some guide (so it must stay closed and not gold)."""
    return GuideExample.objects.filter(pair_id=pair_id).exists()


def add_example(actor, task: Task, pair_id: int, *, right_image_id: int, note: str = "") -> GuideExample:
    """Show the pair in the task's guide with ``right_image_id`` as the right image (one of the pair's two).

    GuideError when the pair is not of the task, takes judgements (open), is gold, is an example already,
    or the guide has GUIDE_MAX_EXAMPLES examples."""
    if len(note) > EXAMPLE_NOTE_MAX_CHARS:
        raise GuideError(f"A note has at most {EXAMPLE_NOTE_MAX_CHARS} characters.")
    with transaction.atomic():
        pair = Pair.objects.select_for_update().select_related("tuple").filter(pk=pair_id).first()
        if pair is None or pair.tuple.task_id != task.pk:
            raise GuideError("No such pair in this task.")
        if right_image_id not in (pair.image_correct_id, pair.image_wrong_id):
            raise GuideError("The right image must be one of the pair's two.")
        if pair.is_gold:
            raise GuideError("A gold pair cannot be a worked example: its answer must stay hidden.")
        if pair.status == Pair.Status.OPEN:
            raise GuideError("This pair still takes judgements; only a closed pair can be a worked example.")
        if is_example(pair.pk):
            raise GuideError("This pair is a worked example already.")
        guide, _ = TaskGuide.objects.get_or_create(task=task)
        if guide.examples.count() >= GUIDE_MAX_EXAMPLES:
            raise GuideError(f"A guide has at most {GUIDE_MAX_EXAMPLES} worked examples.")
        example = GuideExample.objects.create(guide=guide, pair=pair, right_image_id=right_image_id, note=note)
        audit.record(
            actor, "guide.example_added", pair, after={"task": task.code, "right_image": right_image_id, "note": note}
        )
        return example


def remove_example(actor, task: Task, example_id: int) -> None:
    """Take an example out of the task's guide (GuideError when the guide has no such example). The pair
    stays closed; an admin may reopen it as any other pair."""
    with transaction.atomic():
        example = GuideExample.objects.filter(pk=example_id, guide__task=task).select_related("pair").first()
        if example is None:
            raise GuideError("No such worked example in this guide.")
        Pair.objects.select_for_update().filter(pk=example.pair_id).values_list("pk").first()
        audit.record(actor, "guide.example_removed", example.pair, before={"task": task.code})
        example.delete()

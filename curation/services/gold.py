"""Gold items and annotator quality: the only code that decides ``Pair.is_gold`` and ``Expertise.paused``.

A gold item is a pair with a known :class:`~curation.models.Label`. The queue mixes gold pairs into
every annotator's work (``annotation/services/queue.py``); each judgement on one is compared with
the answer, and an annotator whose gold accuracy falls below ``settings.GOLD_MIN_ACCURACY`` after
at least ``settings.GOLD_MIN_ITEMS`` gold judgements is flagged and paused until an admin restores
them.

Decisions:

* **What counts.** An annotator's *gold judgements* are their judgements on gold pairs made at or
  after the pair was marked (``GoldItem.created_at``) and after their last restore
  (``AnnotatorQuality.restored_at``). Judgements made before marking do not count: an admin often
  picks gold from pairs whose judgements are already known, so they would measure nothing. After
  a restore the annotator starts a fresh assessment period, so old results never flag them again;
  the counters show the current period.
* **Recompute, never increment.** A change of the pair's judgements (its consequence
  :func:`curation.services.judging.after_judgements_changed`) does not say whether a judgement was
  added or undone, so every change recomputes the annotator's counters from their rows
  (:func:`record_gold_judgement`). Changing or removing a gold answer recomputes everyone who
  judged the pair since it was marked.
* **When an annotator is assessed.** Only when they *add* a gold judgement. An undo, a changed
  answer or an unmarked item only recomputes counters: the undo hands the annotator a lease on the
  same pair, which a pause would make useless, and an admin's correction should not pause people
  behind their backs. Nothing here clears a flag except :func:`restore`.
* **Marking a judged pair.** A pair that already has judgements may become gold; they stay (and
  keep counting in ``judgement_count``) but are not gold judgements, and their annotators are not
  served the pair again. Marking removes the pair's consensus (``recompute_consensus`` drops the
  row of a gold pair) and reopens a complete pair: gold pairs are never complete, k does not bound
  them. A retired pair may be marked; it is not served until un-retired.
* **Unmarking.** The pair becomes normal again with every judgement it has, gold-era ones included
  (they were blind judgements by qualified annotators); ``k`` is raised to ``judgement_count``
  where it is below, so the ``pair_not_over_k`` constraint holds, the status follows from the
  count, and its consensus is recomputed.
* **Who.** ``admin`` must be an admin; ``None`` stands for the command line (``manage.py
  mark_gold``), whose user already controls the server.

Writes: the curation rows (gold items, quality) are written here; the annotation rows through
their setters in ``annotation/services`` (only they write annotation tables):
:func:`annotation.services.catalog.set_pair_gold` on the pair this module locked, and
:func:`annotation.services.people.set_paused` for the pause.

Locking: everything here that touches a pair locks its row first (as the queue does), then the
annotators' quality rows in user-id order, then their expertise rows; the judgement path takes
the same order (pair, quality, expertise), so there are no deadlocks.

Qualification sets (:mod:`annotation.services.qualification` says what they do in the queue): an admin
puts gold pairs in their task's set (:func:`set_qualification`, or ``mark_gold(..., qualification=True)``);
unmarking gold takes a pair out. Once an annotator has judged every pair of a task's set (its unretired
``is_qualification`` pairs; every judgement of theirs on them counts, made before the marking or not), their
judgements are compared with the gold answers as for gold accuracy, and they pass with at least
``settings.QUALIFICATION_MIN_ACCURACY`` right (:func:`assess_qualification`, from
:func:`record_gold_judgement`). An undo of one of those answers takes the assessment back (they are pending
again, and answer that pair again). Shrinking a set assesses the annotators who have now answered all of
it; growing it or changing an answer changes no assessment made (an admin may decide instead, in
:func:`annotation.services.qualification.decide`), and an admin's decision is never reassessed.

Audit: ``gold.marked``, ``gold.changed`` and ``gold.unmarked`` name the pair; ``quality.updated``
(counters changed), ``annotator.flagged`` and ``annotator.restored`` name the user;
``qualification.added`` and ``qualification.removed`` name the pair; ``qualification.passed``,
``qualification.failed`` and ``qualification.withdrawn`` (an undo) name the user.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation import roles
from annotation.models import Expertise, Judgement, Pair, Task
from annotation.services import audit, catalog, people, qualification
from curation.models import AnnotatorQuality, GoldItem, Label
from curation.services.consensus import label_of, recompute_consensus


class NotGold(LookupError):
    """The pair is not a gold item."""


def _require_admin(admin) -> None:
    if admin is not None and not roles.is_admin(admin):
        raise PermissionDenied("Only admins manage gold items and annotator quality.")


def _gold_state(pair: Pair, item: GoldItem | None) -> dict:
    return {
        "is_gold": pair.is_gold,
        "answer": item.answer if item else None,
        "k": pair.k,
        "status": pair.status,
        "qualification": pair.is_qualification,
    }


def mark_gold(admin, pair_id: int, answer: str, qualification: bool | None = None) -> tuple[GoldItem, bool]:
    """Make the pair gold with this answer, or change the answer of a gold pair; ``qualification``: put it in
    its task's qualification set (True) or take it out (False), None: as it is (a new gold pair: out).

    Returns ``(item, created)``; the same answer again changes nothing. Raises
    ``Pair.DoesNotExist``, ``PermissionDenied``, or ``ValueError`` for an unknown label.
    """
    _require_admin(admin)
    if answer not in Label.values:
        raise ValueError(f"answer must be one of {', '.join(Label.values)}, not {answer!r}.")
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        item = GoldItem.objects.filter(pair=pair).first()
        created = item is None
        if item is not None and item.answer == answer:
            pass
        elif item is None:
            before = _gold_state(pair, item)
            item = GoldItem.objects.create(pair=pair, answer=answer, created_by=admin)
            catalog.set_pair_gold(pair, True)  # reopens a complete pair
            audit.record(admin, "gold.marked", pair, before=before, after=_gold_state(pair, item))
            recompute_consensus(pair.pk, actor=admin)
        else:
            before = _gold_state(pair, item)
            judged_by = _gold_annotator_ids(item)
            item.answer = answer
            item.save(update_fields=["answer"])
            audit.record(admin, "gold.changed", pair, before=before, after=_gold_state(pair, item))
            _recompute_users(judged_by, actor=admin)
        if qualification is not None and qualification != pair.is_qualification:
            _set_qualification(admin, pair, qualification)
        item.pair = pair
        return item, created


def set_qualification(admin, pair_id: int, on: bool) -> Pair:
    """Put a gold pair in its task's qualification set, or take it out; audited. Raises
    ``Pair.DoesNotExist``, :class:`NotGold` or ``PermissionDenied``."""
    _require_admin(admin)
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        if not pair.is_gold:
            raise NotGold(f"Pair {pair_id} is not a gold item; only gold pairs can be in a qualification set.")
        if pair.is_qualification != on:
            _set_qualification(admin, pair, on)
        return pair


def _set_qualification(admin, pair: Pair, on: bool) -> None:
    """On the locked gold pair: change its membership, audit it, and assess the task's pending annotators
    who have now answered the whole (smaller) set."""
    catalog.set_pair_qualification(pair, on)
    audit.record(admin, "qualification.added" if on else "qualification.removed", pair, after={"qualification": on})
    if not on:
        _assess_pending(_task_of(pair), actor=admin)


def _task_of(pair: Pair) -> Task:
    return Task.objects.get(tuples__pairs=pair.pk)


def _assess_pending(task: Task, *, actor) -> None:
    """Assess every annotator of ``task`` without an assessment who has answered its whole set."""
    size = qualification.set_pairs(task).count()
    if not size:
        return
    assessed = qualification.assessed_user_ids(task)
    candidates = (
        Judgement.objects.filter(pair__in=qualification.set_pairs(task))
        .exclude(annotator_id__in=assessed)
        .values_list("annotator_id", flat=True)
        .distinct()
    )
    for user in get_user_model().objects.filter(pk__in=list(candidates)).order_by("pk"):
        assess_qualification(user, task, actor=actor)


def unmark_gold(admin, pair_id: int) -> Pair:
    """Make a gold pair a normal pair again (see the module docstring). Raises :class:`NotGold`."""
    _require_admin(admin)
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        item = GoldItem.objects.filter(pair=pair).first()
        if item is None:
            raise NotGold(f"Pair {pair_id} is not a gold item.")
        judged_by = _gold_annotator_ids(item)
        before = _gold_state(pair, item)
        item.delete()
        catalog.set_pair_gold(pair, False)  # k raised to the judgement count, status from the count; out of the set
        audit.record(admin, "gold.unmarked", pair, before=before, after=_gold_state(pair, None))
        _recompute_users(judged_by, actor=admin)
        recompute_consensus(pair.pk, actor=admin)
        if before["qualification"]:
            _assess_pending(_task_of(pair), actor=admin)
        return pair


def gold_items():
    """Every gold item, newest first."""
    return GoldItem.objects.select_related("created_by", "pair").order_by("-created_at", "-id")


def record_gold_judgement(pair_id: int, annotator, *, locked_pair: Pair | None = None) -> AnnotatorQuality | None:
    """After ``annotator`` added or undid a judgement on the pair: if it is gold, recompute their
    counters, and if the judgement was added, assess them. Called by
    :func:`curation.services.judging.after_judgements_changed`, inside the judgement's transaction and
    under the pair's lock (``locked_pair``: the locked row as it stands, when the caller has it, saves
    reading whether the pair is gold)."""
    is_gold = (
        locked_pair.is_gold if locked_pair is not None else (Pair.objects.filter(pk=pair_id, is_gold=True).exists())
    )
    if not is_gold:
        return None
    quality = _recompute(annotator, actor=annotator)
    if Judgement.objects.filter(pair_id=pair_id, annotator=annotator).exists():
        _assess(quality, actor=annotator)
    in_set = (
        locked_pair.is_qualification
        if locked_pair is not None
        else Pair.objects.filter(pk=pair_id, is_qualification=True).exists()
    )
    if in_set:
        assess_qualification(annotator, Task.objects.get(tuples__pairs=pair_id), actor=annotator)
    return quality


def assess_qualification(user, task: Task, *, actor) -> None:
    """(Re)assess ``user`` on ``task``'s qualification set from their judgements (see the module docstring):
    record the result once they have answered the whole set, take an automatic result back when they no
    longer have (an undo). An admin's decision stays."""
    row = qualification.row_of(user, task)
    if row is not None and row.decided_by_id is not None:
        return
    pairs = qualification.set_pairs(task)
    size = pairs.count()
    if not size:
        return
    answers = list(
        Judgement.objects.filter(annotator=user, pair__in=pairs).values_list(
            "choice", "chosen_image_id", "pair__image_correct_id", "pair__gold__answer"
        )
    )
    if len(answers) < size:
        if row is not None and qualification.withdraw(user, task):
            audit.record(actor, "qualification.withdrawn", user, before={"task": task.code, "passed": row.passed})
        return
    correct = sum(1 for choice, chosen, expected, answer in answers if label_of(choice, chosen, expected) == answer)
    passed = correct / len(answers) >= settings.QUALIFICATION_MIN_ACCURACY
    if row is not None and (row.passed, row.correct, row.answered) == (passed, correct, len(answers)):
        return
    qualification.record(user, task, correct=correct, answered=len(answers), passed=passed)
    audit.record(
        actor,
        "qualification.passed" if passed else "qualification.failed",
        user,
        after={"task": task.code, "correct": correct, "answered": len(answers)},
    )


def restore(admin, user) -> AnnotatorQuality:
    """Clear the flag and the pause and start a fresh assessment period; a no-op for an annotator
    who is neither flagged nor paused."""
    _require_admin(admin)
    with transaction.atomic():
        quality = _locked_quality(user)
        paused = Expertise.objects.filter(user=user, paused=True).exists()
        if not (quality.flagged or paused):
            return quality
        before = _quality_state(quality, paused=paused)
        quality.flagged = False
        quality.restored_at = timezone.now()
        quality.restored_by = admin
        quality.gold_judged, quality.gold_correct = _gold_counts(user, since=quality.restored_at)
        quality.save(update_fields=["flagged", "restored_at", "restored_by", "gold_judged", "gold_correct"])
        people.set_paused(user, False)
        audit.record(admin, "annotator.restored", user, before=before, after=_quality_state(quality, paused=False))
        return quality


def quality_rows():
    """Every annotator with gold activity (a quality row), with user and expertise loaded."""
    return AnnotatorQuality.objects.select_related("user__expertise", "restored_by").order_by("user__username")


# --- Counting ---------------------------------------------------------------------------------


def _gold_annotator_ids(item: GoldItem) -> list[int]:
    return sorted(
        Judgement.objects.filter(pair_id=item.pair_id, created_at__gte=item.created_at).values_list(
            "annotator_id", flat=True
        )
    )


def _gold_counts(user, *, since) -> tuple[int, int]:
    """``(judged, correct)`` over the user's gold judgements after ``since`` (None: all)."""
    rows = Judgement.objects.filter(annotator=user, pair__is_gold=True, created_at__gte=F("pair__gold__created_at"))
    if since is not None:
        rows = rows.filter(created_at__gt=since)
    judged = correct = 0
    for choice, chosen, expected, answer in rows.values_list(
        "choice", "chosen_image_id", "pair__image_correct_id", "pair__gold__answer"
    ):
        judged += 1
        correct += label_of(choice, chosen, expected) == answer
    return judged, correct


def _locked_quality(user) -> AnnotatorQuality:
    quality, _ = AnnotatorQuality.objects.select_for_update().get_or_create(user=user)
    return quality


def _quality_state(quality: AnnotatorQuality, *, paused: bool) -> dict:
    return {
        "gold_judged": quality.gold_judged,
        "gold_correct": quality.gold_correct,
        "flagged": quality.flagged,
        "paused": paused,
    }


def _recompute(user, *, actor) -> AnnotatorQuality:
    quality = _locked_quality(user)
    counts = _gold_counts(user, since=quality.restored_at)
    if counts != (quality.gold_judged, quality.gold_correct):
        before = {"gold_judged": quality.gold_judged, "gold_correct": quality.gold_correct}
        quality.gold_judged, quality.gold_correct = counts
        quality.save(update_fields=["gold_judged", "gold_correct"])
        audit.record(
            actor,
            "quality.updated",
            user,
            before=before,
            after={"gold_judged": quality.gold_judged, "gold_correct": quality.gold_correct},
        )
    return quality


def _recompute_users(user_ids: list[int], *, actor) -> None:
    for user in get_user_model().objects.filter(pk__in=user_ids).order_by("pk"):
        _recompute(user, actor=actor)


def _assess(quality: AnnotatorQuality, *, actor) -> None:
    """Flag and pause an annotator whose accuracy in this period is below the threshold."""
    if quality.flagged or quality.gold_judged < settings.GOLD_MIN_ITEMS:
        return
    if quality.gold_accuracy >= settings.GOLD_MIN_ACCURACY:
        return
    before = _quality_state(quality, paused=Expertise.objects.filter(user=quality.user, paused=True).exists())
    quality.flagged = True
    quality.flagged_at = timezone.now()
    quality.save(update_fields=["flagged", "flagged_at"])
    people.set_paused(quality.user, True)
    audit.record(actor, "annotator.flagged", quality.user, before=before, after=_quality_state(quality, paused=True))


# --- Session feedback -------------------------------------------------------------------------


def session_report(user, start, end) -> dict:
    """An ended session's attention-check report for the annotator (Prolific-style): how many pairs they judged
    between ``start`` (exclusive; ``None``: from the beginning) and ``end``, how many were gold, how many of those
    they got right, and per gold item its prompt and whether it was right — never the answer itself.

    Call it only for a session that has ended (:func:`annotation.services.sessions.ended_sessions`): before
    that the annotator must not learn which pairs were gold, and after it those judgements cannot be undone."""
    rows = Judgement.objects.filter(annotator=user, created_at__lte=end)
    if start is not None:
        rows = rows.filter(created_at__gt=start)
    checks: list[dict] = []
    for prompt, choice, chosen, expected, answer in (
        rows.filter(pair__is_gold=True, created_at__gte=F("pair__gold__created_at"))
        .order_by("created_at", "id")
        .values_list(
            "pair__tuple__implicit_prompt", "choice", "chosen_image_id", "pair__image_correct_id", "pair__gold__answer"
        )
    ):
        checks.append({"prompt": prompt, "right": label_of(choice, chosen, expected) == answer})
    right = sum(1 for check in checks if check["right"])
    return {
        "start": start,
        "end": end,
        "judged": rows.count(),
        "checks": checks,
        "right": right,
        "percent": round(100 * right / len(checks)) if checks else None,
    }

"""The pull queue: leases, judgements, skips and undo.

Invariants (tested in tests/annotation/test_queue_*.py and tests/system/test_queue_concurrency.py):

* a pair is never handed to more annotators than ``k - (judgements + live leases)`` allows;
* never twice to one annotator (a judgement is unique per (pair, annotator), and an annotator
  holds at most one live lease: asking again returns it);
* never outside the annotator's expertise;
* ``Pair.judgement_count`` always equals the number of its Judgement rows;
* a paused annotator (``Expertise.paused``, set by :mod:`curation.services.gold`) gets no lease;
* an annotator still answering a task's qualification set gets only its pairs from that task, and one
  who failed it gets nothing from it (:mod:`annotation.services.qualification`).

Gold pairs (``Pair.is_gold``) are mixed in: with probability ``settings.GOLD_RATE`` a new lease
tries a gold pair first, otherwise a normal pair first; whichever kind is tried first, the other
is the fallback, so a gold pair is also served when nothing else is left. Gold pairs go to every
annotator of their task once: k, live leases and completion do not apply to them (the
``pair_not_over_k`` constraint exempts them), and normal selection never returns them, so gold
leases take no capacity from normal pairs. A gold lease looks exactly like any other (same
payload, same random left/right order). Skipped pairs of either kind come after all unskipped
pairs of both kinds.

Qualification sets (gold pairs with ``Pair.is_qualification``): on a task with a set, an annotator with
no assessment yet (*pending*, the annotator state's qualification column) is leased only the set's pairs
they have not judged, before anything else (the gold window with ``is_qualification = true`` over the
pending tasks); the normal and gold windows run over the other tasks, minus those the annotator *failed*.
The usual gold window leaves the set's pairs out. So an unqualified annotator never judges a normal pair of
the task, and k, counting and consensus need no change. Each window is a statement only when there is a
task for it, so ``next`` keeps its statement count.

Locking policy: every transaction that creates a lease or a judgement for a pair, or removes one,
first locks that pair's row (``SELECT ... FOR UPDATE``), then counts the pair's live leases in a
*new* statement (for a new lease, the INSERT itself, which writes the row only if there is room),
so under READ COMMITTED it sees everything committed by the previous holder of the lock.
Candidate pairs are locked with ``skip_locked`` in a small window, so concurrent annotators
spread over different pairs instead of queueing on one; the pick inside the window is random.
Gold pairs are locked the same way: they need no capacity check, but marking, unmarking and
retiring change them under the same lock. A ``next`` transaction waits for a pair lock only
while it holds no other: when every candidate is locked by someone else and this transaction
already holds a window whose pairs all turned out full (the statement's snapshot was stale), the
whole transaction is rolled back and started again (which releases its locks) before it waits;
otherwise two such transactions, each holding a full window and waiting for a pair in the other's,
deadlock. A lease is *live* while its state is ``active`` and ``expires_at`` is in the future; an
expired lease stops counting at once, and the periodic task :func:`reclaim_expired_leases` (or the
annotator's next request) marks it ``expired``.

Cost (``bench/queue_load.py`` measures it under load; docs/benchmarks/queue.md): ``next`` runs a
fixed number of statements whatever the number of pairs — the annotator's state (pause, whether a
lease is active, the allowed tasks with what the payload shows of them) in one, the candidate
window (which also loads the prompt) and the insert, which re-checks the capacity (one more insert
for each pair of the window that turns out full under contention); the live lease is read only
when one exists. A judgement runs: the pair and lease locks (one statement), the judgement, pair,
lease and audit writes (one statement on PostgreSQL), then the consequences its caller passes in
(:mod:`curation.services.judging`: consensus, gold, pausing), inside the same transaction and under
the same pair lock. Those statements are the literal SQL of :mod:`annotation.services.queue_sql`
(which says why they are not the ORM); everything else here is the ORM.

Consequences: this module belongs to the annotation app, which knows nothing of curation. A change
of a pair's judgements has consequences there (consensus, gold accuracy, pausing an annotator), so
:func:`submit_judgement` and :func:`undo_last_judgement` take them as an argument,
``consequences(pair, actor)``, called inside the transaction while the pair's row is locked, with
the pair as it now stands. The one place that passes them is :mod:`curation.services.judging`.

On SQLite there are no row locks: the settings open every transaction with ``BEGIN IMMEDIATE``,
which takes the database write lock up front, so queue transactions run one at a time — correct,
not concurrent.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import AuditEvent, Expertise, Judgement, Lease, Pair, Task, TaskGuide
from annotation.services import audit, guides, queue_sql, sessions

Consequences = Callable[[Pair, object], None]
"""What a change of a pair's judgements sets off elsewhere: ``consequences(locked pair, actor)``."""


class QueueError(Exception):
    """A refusal with a stable code; the API turns it into a 4xx with this message."""

    status = 409
    code = "conflict"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LeaseNotFound(QueueError):
    status = 404
    code = "lease_not_found"


class LeaseNotActive(QueueError):
    code = "lease_not_active"


class PairUnavailable(QueueError):
    code = "pair_unavailable"


class AlreadyJudged(QueueError):
    code = "already_judged"


class NothingToUndo(QueueError):
    status = 404
    code = "nothing_to_undo"


class AlreadyUndone(QueueError):
    code = "already_undone"


class AnnotatorPaused(QueueError):
    status = 403
    code = "paused"


class InvalidReasons(QueueError):
    status = 400
    code = "invalid_reasons"


@dataclass(frozen=True)
class JudgementInput:
    choice: str
    flag_prompt_unclear: bool = False
    flag_image_broken: bool = False
    flag_off_topic: bool = False
    comment: str = ""
    time_spent_ms: int | None = None
    confidence: str = ""  # "", "sure" or "unsure"
    reasons: tuple[str, ...] = ()  # labels from the task guide's reasons (checked by the caller)


def _now():
    return timezone.now()


def check_reasons(user, lease_id: int, reasons) -> None:
    """Refuse (:class:`InvalidReasons`) reasons that are not in the guide of the lease's task. One query, run
    by :func:`curation.services.judging.judge` only when a judgement gives reasons, so the usual judgement
    (a key press, no reasons) costs nothing more."""
    allowed = (
        TaskGuide.objects.filter(task__tuples__pairs__leases=lease_id, task__tuples__pairs__leases__annotator=user)
        .values_list("reasons", flat=True)
        .first()
    )
    unknown = [reason for reason in reasons if reason not in (allowed or [])]
    if unknown:
        raise InvalidReasons(f"Not a reason of this task: {', '.join(unknown)[:200]}.")


def allowed_tasks(user, *, task: str | None = None, discipline: str | None = None) -> list[int]:
    """Ids of the tasks inside the user's expertise, narrowed by the optional filters (the rule is
    the statement :data:`annotation.services.queue_sql.ANNOTATOR_STATE`)."""
    return sorted(queue_sql.annotator_state(user.pk, task=task, discipline=discipline)[2])


def live_lease_of(user) -> Lease | None:
    """The annotator's live lease, after retiring their own lease if it has expired."""
    now = _now()
    lease = (
        Lease.objects.select_related("pair__tuple__task__discipline")
        .filter(annotator=user, state=Lease.State.ACTIVE)
        .first()
    )
    if lease is not None and lease.expires_at <= now:
        # At most one active lease per annotator (a unique constraint), so this is the only one.
        Lease.objects.filter(pk=lease.pk, state=Lease.State.ACTIVE, expires_at__lte=now).update(
            state=Lease.State.EXPIRED, ended_at=now
        )
        return None
    return lease


def _ensure_not_paused(user) -> None:
    if Expertise.objects.filter(user=user, paused=True).exists():
        raise AnnotatorPaused("Your account is paused, so no pairs are served to you; an admin can restore it.")


class _Restart(Exception):
    """Roll the ``next`` transaction back (releasing its pair locks) and start it again."""


def _lock_window(user, now, task_ids, full, *, skipped: bool, gold: bool, qualification: bool) -> list[Pair]:
    """Lock up to ``QUEUE_LOCK_WINDOW`` candidates that nobody else holds, skipping ``full``."""
    args = {"skipped": skipped, "gold": gold, "qualification": qualification}
    locked = queue_sql.window(user.pk, now, task_ids, full, limit=settings.QUEUE_LOCK_WINDOW, skip_locked=True, **args)
    if locked:
        return locked
    # Everything available is locked by someone else right now: wait for one lock rather than
    # answering "nothing left" while pairs are merely busy for a few milliseconds — but never
    # while holding other pair locks (see the locking policy), and on one row named by its id:
    # a scan that waits (``LIMIT 1 FOR UPDATE``) keeps the locks of rows it passes over after
    # re-checking them, so two such scans deadlock (seen under 32 racing annotators).
    if full:
        raise _Restart
    first = queue_sql.window(user.pk, now, task_ids, full, limit=1, skip_locked=False, **args)  # no lock
    if not first:
        return []
    list(Pair.objects.select_for_update().filter(pk=first[0].pk).values_list("pk"))  # wait for its lock
    locked = queue_sql.window(user.pk, now, task_ids, full, limit=settings.QUEUE_LOCK_WINDOW, skip_locked=True, **args)
    if not locked:
        raise _Restart  # the pair waited for is taken: start again, holding nothing
    return locked


def next_lease(user, *, task: str | None = None, discipline: str | None = None) -> Lease | None:
    """The user's live lease, or a new one (gold mixed in at ``GOLD_RATE``), or None if nothing
    is left. Raises :class:`AnnotatorPaused` for a paused annotator."""
    while True:
        try:
            with transaction.atomic():
                return _next_lease(user, task=task, discipline=discipline)
        except _Restart:
            continue
        except IntegrityError:
            # A concurrent request of the same annotator created their one live lease first
            # (the lease insert is the only write here that a constraint can refuse).
            with transaction.atomic():
                existing = live_lease_of(user)
            if existing is None:
                raise
            return existing


def _next_lease(user, *, task, discipline) -> Lease | None:
    paused, leased, tasks, qualification = queue_sql.annotator_queue_state(user.pk, task=task, discipline=discipline)
    if paused:
        _ensure_not_paused(user)  # raises
    if leased:
        lease = live_lease_of(user)
        if lease is not None:
            return lease
    if not tasks:
        return None
    # Qualification (annotation/services/qualification.py): a failed task serves nothing; a pending one only
    # its qualification pairs, tried first; the normal and gold windows run over the other tasks.
    pending = sorted(t for t, state in qualification.items() if state == "pending")
    others = sorted(t for t, state in qualification.items() if state not in ("pending", "failed"))
    now = _now()
    kinds = (True, False) if random.random() < settings.GOLD_RATE else (False, True)
    for skipped in (False, True):
        if pending:
            lease = _lease_from_window(user, tasks, now, pending, skipped=skipped, gold=True, qualification=True)
            if lease is not None:
                return lease
        if not others:
            continue
        for gold in kinds:
            lease = _lease_from_window(user, tasks, now, others, skipped=skipped, gold=gold)
            if lease is not None:
                return lease
    return None


def _lease_from_window(
    user, tasks: dict[int, Task], now, task_ids, *, skipped: bool, gold: bool, qualification: bool = False
) -> Lease | None:
    """Lock a window of candidates and lease one of them, picked at random; the window stays locked
    until commit.

    The window's statement may not see leases committed after it began (its snapshot) on pairs it
    then locked, so a normal pair's room is counted again in the lease's INSERT itself, a new
    statement that sees every commit before it: the lease is written only if live leases plus
    judgements stay under k. A pair that turns out full is set aside and another one of the window
    is tried. A window whose pairs all turn out full stays locked (nobody may lease them anyway)
    while the next window is taken with ``skip_locked``, which never waits; if a lock must be waited
    for while such a window is held, :class:`_Restart` rolls the whole transaction back first."""
    full: set[int] = set()
    while True:
        locked = _lock_window(user, now, task_ids, full, skipped=skipped, gold=gold, qualification=qualification)
        if not locked:
            return None
        random.shuffle(locked)
        for pair in locked:
            task_id = pair.tuple.task_id
            assert task_id is not None  # the window selects tuples by their task
            pair.tuple.task = tasks[task_id]  # for the payload
            room = queue_sql.NO_LIMIT if gold else pair.k - pair.judgement_count
            lease = queue_sql.insert_lease(_new_lease(user, pair, now), now=now, room=room)
            if lease is not None:
                lease.pair = pair
                return lease
            full.add(pair.pk)  # the window's snapshot was stale for this pair: it is full


def _new_lease(user, pair: Pair, now, order: tuple[int, int] | None = None) -> Lease:
    """An unsaved lease of ``pair`` to the user, its images in random left/right order (or ``order``)."""
    if order is None:
        order = (pair.image_correct_id, pair.image_wrong_id)
        if random.random() < 0.5:
            order = order[::-1]
    return Lease(
        pair=pair, annotator=user, left_image_id=order[0], right_image_id=order[1], expires_at=now + settings.LEASE_TTL
    )


def _own_lease(user, lease_id) -> Lease:
    lease = Lease.objects.filter(pk=lease_id, annotator=user).only("id", "pair_id").first()
    if lease is None:
        raise LeaseNotFound("No such lease for this user.")
    return lease


def _lock_pair_and_lease(user, lease_id) -> tuple[Pair, Lease]:
    """Lock the pair first, then the lease: the same order everywhere, so no deadlocks. The pair
    is found through the user's own lease (404 for anyone else's)."""
    found = queue_sql.lock_pair_and_lease(lease_id, user.pk)
    if found is None:
        raise LeaseNotFound("No such lease for this user.")
    return found


def _has_room_for(pair: Pair, lease: Lease, now) -> bool:
    """Whether an expired-but-unreclaimed lease may still be honoured: the slot it held is free
    (a gold pair has no slots: it takes judgements until it is retired). The count is a new
    statement: under READ COMMITTED it sees every commit so far."""
    if pair.is_gold:
        return pair.status != Pair.Status.RETIRED
    others = (
        Lease.objects.filter(pair_id=pair.pk, state=Lease.State.ACTIVE, expires_at__gt=now).exclude(pk=lease.pk).count()
    )
    return pair.status == Pair.Status.OPEN and pair.judgement_count + others < pair.k


class _SlotGone(LeaseNotActive):
    """An expired lease whose slot went to someone else. The refusing transaction is rolled back,
    so :func:`_expire_when_slot_gone` marks the lease expired after it, in its own statement."""

    def __init__(self, lease_id: int, now):
        super().__init__("This lease expired and its pair went to someone else; ask for the next pair.")
        self.lease_id, self.now = lease_id, now


def _expire_when_slot_gone(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _SlotGone as exc:
            Lease.objects.filter(pk=exc.lease_id, state=Lease.State.ACTIVE, expires_at__lte=exc.now).update(
                state=Lease.State.EXPIRED, ended_at=exc.now
            )
            raise

    return wrapper


def _refuse_a_second_judgement(func):
    """A lease on a pair its annotator already judged is never handed out (the candidate window
    excludes judged pairs, undo cancels the judged lease), but should one exist (a row edited in
    the database, a future bug), the unique (pair, annotator) constraint refuses the judgement: a
    clear 409, not a server error. Caught after the transaction, so the hot path pays nothing."""

    @functools.wraps(func)
    def wrapper(user, lease_id, *args, **kwargs):
        try:
            return func(user, lease_id, *args, **kwargs)
        except IntegrityError:
            if not Judgement.objects.filter(annotator=user, pair__leases=lease_id).exists():
                raise
            raise AlreadyJudged("You have already judged this pair; use undo to change your judgement.") from None

    return wrapper


@_refuse_a_second_judgement
@_expire_when_slot_gone
def submit_judgement(
    user, lease_id, data: JudgementInput, *, consequences: Consequences | None = None
) -> tuple[Judgement, bool]:
    """Record a judgement through the user's lease and end the lease; then, in the same transaction
    and under the pair's lock, ``consequences(pair, user)`` (see the module docstring).

    Returns ``(judgement, created)``. Re-sending the same choice for an already judged lease (a
    double click, a client retry) returns the existing judgement with ``created=False``.
    """
    if data.choice not in Judgement.Choice.values:
        raise QueueError(f"choice must be one of {', '.join(Judgement.Choice.values)}.")
    with transaction.atomic():
        pair, lease = _lock_pair_and_lease(user, lease_id)
        now = _now()
        if lease.state == Lease.State.JUDGED:
            existing = Judgement.objects.get(lease=lease)
            if existing.choice == data.choice:
                return existing, False
            raise LeaseNotActive("This lease was already judged with another choice; use undo to change it.")
        if lease.state != Lease.State.ACTIVE:
            raise LeaseNotActive(f"This lease is {lease.state}; ask for the next pair.")
        if lease.expires_at <= now and not _has_room_for(pair, lease, now):
            raise _SlotGone(lease.pk, now)
        if pair.status == Pair.Status.RETIRED or (not pair.is_gold and pair.judgement_count >= pair.k):
            raise PairUnavailable("This pair no longer takes judgements.")
        sides: dict[str, int | None] = {
            Judgement.Choice.LEFT: lease.left_image_id,
            Judgement.Choice.RIGHT: lease.right_image_id,
        }
        chosen = sides.get(data.choice)
        judgement = Judgement(
            pair=pair,
            annotator=user,
            lease=lease,
            choice=data.choice,
            chosen_image_id=chosen,
            flag_prompt_unclear=data.flag_prompt_unclear,
            flag_image_broken=data.flag_image_broken,
            flag_off_topic=data.flag_off_topic,
            comment=data.comment,
            time_spent_ms=data.time_spent_ms,
            confidence=data.confidence,
            reasons=list(data.reasons),
        )
        pair.judgement_count += 1
        if not pair.is_gold and pair.judgement_count >= pair.k:
            pair.status = Pair.Status.COMPLETE
        judgement = queue_sql.write_judgement(judgement, pair, lease, now=now, after=_judgement_state(judgement))
        if consequences is not None:
            consequences(pair, user)
        return judgement, True


def _judgement_state(judgement: Judgement) -> dict:
    return {
        "pair": judgement.pair_id,
        "annotator": judgement.annotator_id,
        "choice": judgement.choice,
        "chosen_image": judgement.chosen_image_id,
    }


@_expire_when_slot_gone
def heartbeat(user, lease_id) -> Lease:
    """Extend a live lease; revive an expired one only if its slot is still free.

    The fast path (one UPDATE, no pair lock) is taken only while the lease has more than half its
    TTL left. Closer to expiry the decision is made under the pair lock like every other capacity
    decision: otherwise a heartbeat that read the clock just before the expiry and wrote just
    after it could extend a lease whose slot a concurrent ``next`` had already counted as free and
    handed on (tests/system/test_reliability_races.py). A fast-path UPDATE would have to be delayed by
    half a TTL for that to happen again."""
    now = _now()
    extended = Lease.objects.filter(
        pk=lease_id, annotator=user, state=Lease.State.ACTIVE, expires_at__gt=now + settings.LEASE_TTL / 2
    ).update(expires_at=now + settings.LEASE_TTL, heartbeat_at=now)
    if not extended:
        with transaction.atomic():
            pair, lease = _lock_pair_and_lease(user, lease_id)
            now = _now()  # read under the lock: a lease that expired while this waited must have room
            if lease.state != Lease.State.ACTIVE:
                raise LeaseNotActive(f"This lease is {lease.state}; ask for the next pair.")
            if lease.expires_at <= now and not _has_room_for(pair, lease, now):
                raise _SlotGone(lease.pk, now)
            Lease.objects.filter(pk=lease.pk).update(expires_at=now + settings.LEASE_TTL, heartbeat_at=now)
    return Lease.objects.select_related("pair__tuple__task__discipline").get(pk=lease_id)


def release(user, lease_id) -> Lease:
    """Skip: the pair goes back to others, and to this user only after the rest of their queue."""
    now = _now()
    lease = _own_lease(user, lease_id)
    updated = Lease.objects.filter(pk=lease.pk, state=Lease.State.ACTIVE).update(
        state=Lease.State.RELEASED, ended_at=now
    )
    lease = Lease.objects.get(pk=lease.pk)
    if not updated and lease.state != Lease.State.RELEASED:
        raise LeaseNotActive(f"This lease is {lease.state}; there is nothing to skip.")
    return lease


def undo_last_judgement(user, *, judgement_id: int | None = None, consequences: Consequences | None = None) -> Lease:
    """Take back one of the user's judgements inside the undo window — ``judgement_id``, or else their
    latest — and lease its pair to them again in the same left/right order, so the page shows it for
    a new decision; then, in the same transaction and under the pair's lock,
    ``consequences(pair, user)``. A paused annotator may not undo: the pause follows a gold
    judgement, and undoing it would let them change a gold answer they now know was wrong.

    Serialized per annotator with their judgements: the transaction first locks the annotator's
    active lease, which a judgement locks too (with its pair), and only then reads which judgement
    is the latest. An undo and a judgement sent together therefore run one after the other — the
    judgement first (the undo then takes back that judgement) or the undo first (the judgement is
    refused: its lease was cancelled) — never both against the state before either.

    A named undo is idempotent: repeating it after it succeeded answers with the lease it gave (the
    annotator's live lease on that pair), or refuses with ``already_undone`` once that lease is gone."""
    with transaction.atomic():
        _ensure_not_paused(user)
        list(Lease.objects.select_for_update().filter(annotator=user, state=Lease.State.ACTIVE).values_list("pk"))
        now = _now()
        recent = Judgement.objects.filter(annotator=user, created_at__gte=now - settings.UNDO_WINDOW)
        ended = sessions.last_end(user)  # an ended session's judgements are settled (annotation.services.sessions)
        if ended is not None:
            recent = recent.filter(created_at__gt=ended)
        if judgement_id is not None:
            recent = recent.filter(pk=judgement_id)
        latest = recent.order_by("-created_at", "-id").only("id", "pair_id").first()
        if latest is None:
            if judgement_id is not None:
                return _undone_before(user, judgement_id)
            raise NothingToUndo("There is no judgement of yours recent enough to undo.")
        pair = Pair.objects.select_for_update().get(pk=latest.pair_id)
        if guides.is_example(pair.pk):
            raise PairUnavailable("This pair is now a worked example in the task's guide; it is not judged again.")
        judgement = Judgement.objects.select_related("lease").filter(pk=latest.pk).first()
        if judgement is None:
            if judgement_id is not None:
                return _undone_before(user, judgement_id)
            raise NothingToUndo("That judgement was already undone.")
        Lease.objects.filter(annotator=user, state=Lease.State.ACTIVE).update(state=Lease.State.CANCELLED, ended_at=now)
        old_lease = judgement.lease
        audit.record(user, "judgement.undone", judgement, before=_judgement_state(judgement))
        judgement.delete()
        Lease.objects.filter(pk=old_lease.pk).update(state=Lease.State.CANCELLED)
        pair.judgement_count -= 1
        if pair.status == Pair.Status.COMPLETE:
            pair.status = Pair.Status.OPEN
        pair.save(update_fields=["judgement_count", "status"])
        if consequences is not None:
            consequences(pair, user)
        lease = _new_lease(user, pair, now, order=(old_lease.left_image_id, old_lease.right_image_id))
        try:
            with transaction.atomic():
                lease.save(force_insert=True)
        except IntegrityError:
            # A concurrent request of the same annotator created their one live lease first.
            existing = live_lease_of(user)
            if existing is None:
                raise
            return existing
        return Lease.objects.select_related("pair__tuple__task__discipline").get(pk=lease.pk)


def _undone_before(user, judgement_id: int) -> Lease:
    """A named undo of a judgement that is not there: the repeat of an undo that succeeded (its audit
    event says so) answers with the lease it gave, while that lease is live; anything else is refused."""
    undone = (
        AuditEvent.objects.filter(
            action="judgement.undone", target_type="judgement", target_id=str(judgement_id), actor=user
        )
        .order_by("-id")
        .first()
    )
    if undone is None:
        raise NothingToUndo("No such judgement of yours inside the undo window.")
    lease = live_lease_of(user)
    if lease is not None and lease.pair_id == (undone.before or {}).get("pair"):
        return lease
    raise AlreadyUndone("That judgement was already undone; its pair is no longer leased to you.")


def reclaim_expired_leases() -> int:
    """Mark every lease past its expiry as expired; returns how many. Run by Celery beat."""
    now = _now()
    return Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lte=now).update(
        state=Lease.State.EXPIRED, ended_at=now
    )

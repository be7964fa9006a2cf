"""The pull queue: leases, judgements, skips and undo.

Invariants (tested in tests/test_queue_*.py):

* a pair is never handed to more annotators than ``k - (judgements + live leases)`` allows;
* never twice to one annotator (a judgement is unique per (pair, annotator), and an annotator
  holds at most one live lease: asking again returns it);
* never outside the annotator's expertise;
* ``Pair.judgement_count`` always equals the number of its Judgement rows;
* a paused annotator (``Expertise.paused``, set by :mod:`curation.services.gold`) gets no lease.

Gold pairs (``Pair.is_gold``) are mixed in: with probability ``settings.GOLD_RATE`` a new lease
tries a gold pair first, otherwise a normal pair first; whichever kind is tried first, the other
is the fallback, so a gold pair is also served when nothing else is left. Gold pairs go to every
annotator of their task once: k, live leases and completion do not apply to them (the
``pair_not_over_k`` constraint exempts them), and normal selection never returns them, so gold
leases take no capacity from normal pairs. A gold lease looks exactly like any other (same
payload, same random left/right order). Skipped pairs of either kind come after all unskipped
pairs of both kinds.

Locking policy: every transaction that creates a lease or a judgement for a pair, or removes one,
first locks that pair's row (``SELECT ... FOR UPDATE``), then reads the pair's live leases in a
*new* statement, so under READ COMMITTED it sees everything committed by the previous holder of
the lock. Candidate pairs are locked with ``skip_locked`` in a small window, so concurrent
annotators spread over different pairs instead of queueing on one; the pick inside the window is
random. Gold pairs are locked the same way: they need no capacity check, but marking, unmarking
and retiring change them under the same lock. A ``next`` transaction waits for a pair lock only
while it holds no other: a window whose pairs all turned out full (the statement's snapshot was
stale) is rolled back to a savepoint, which releases its locks, before the next window is taken;
otherwise two such transactions, each holding a full window and waiting for a pair in the other's,
deadlock. A lease is *live* while its state is ``active`` and ``expires_at`` is in the future; an
expired lease stops counting at once, and the periodic task :func:`reclaim_expired_leases` (or the
annotator's next request) marks it ``expired``.

On SQLite there are no row locks: the settings open every transaction with ``BEGIN IMMEDIATE``,
which takes the database write lock up front, so queue transactions run one at a time — correct,
not concurrent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Expertise, Judgement, Lease, Pair, Task
from annotation.services import audit
from annotation.signals import judgements_changed


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


class NothingToUndo(QueueError):
    status = 404
    code = "nothing_to_undo"


class AnnotatorPaused(QueueError):
    status = 403
    code = "paused"


@dataclass(frozen=True)
class JudgementInput:
    choice: str
    flag_prompt_unclear: bool = False
    flag_image_broken: bool = False
    flag_off_topic: bool = False
    comment: str = ""
    time_spent_ms: int | None = None


def _now():
    return timezone.now()


def allowed_tasks(user, *, task: str | None = None, discipline: str | None = None):
    """Tasks inside the user's expertise, narrowed by the optional filters (a queryset of ids)."""
    qs = Task.objects.filter(Q(experts__user=user) | Q(discipline__experts__user=user))
    if task:
        qs = qs.filter(code__iexact=task)
    if discipline:
        qs = qs.filter(discipline__slug__iexact=discipline)
    return qs.values("id")


def live_lease_of(user) -> Lease | None:
    """The annotator's live lease, after retiring their own lease if it has expired."""
    now = _now()
    Lease.objects.filter(annotator=user, state=Lease.State.ACTIVE, expires_at__lte=now).update(
        state=Lease.State.EXPIRED, ended_at=now
    )
    return (
        Lease.objects.select_related("pair__tuple__task__discipline")
        .filter(annotator=user, state=Lease.State.ACTIVE)
        .first()
    )


def _live_counts(pair_ids, now, *, exclude_lease=None) -> dict[int, int]:
    qs = Lease.objects.filter(pair_id__in=pair_ids, state=Lease.State.ACTIVE, expires_at__gt=now)
    if exclude_lease is not None:
        qs = qs.exclude(pk=exclude_lease)
    return dict(qs.order_by().values("pair_id").annotate(n=Count("id")).values_list("pair_id", "n"))


def _ensure_not_paused(user) -> None:
    if Expertise.objects.filter(user=user, paused=True).exists():
        raise AnnotatorPaused(
            "Your account is paused pending review of your gold answers; an admin can restore it."
        )


def _candidates(user, now, tasks, *, skipped: bool, gold: bool):
    """Pairs in the user's tasks that they have not judged. Normal pairs (``gold=False``) must be
    open with capacity as far as this statement's snapshot can tell (re-checked under the lock);
    gold pairs only must not be retired. ``skipped`` selects the pairs the user released
    earlier, which come only after everything else."""
    mine_released = Lease.objects.filter(annotator=user, state=Lease.State.RELEASED).values("pair_id")
    qs = Pair.objects.filter(is_gold=gold, tuple__task_id__in=tasks).exclude(
        id__in=Judgement.objects.filter(annotator=user).values("pair_id")
    )
    if gold:
        qs = qs.exclude(status=Pair.Status.RETIRED)
    else:
        live = (
            Lease.objects.filter(pair=OuterRef("pk"), state=Lease.State.ACTIVE, expires_at__gt=now)
            .order_by()
            .values("pair")
            .annotate(n=Count("id"))
            .values("n")
        )
        qs = (
            qs.filter(status=Pair.Status.OPEN, judgement_count__lt=F("k"))
            .annotate(live=Coalesce(Subquery(live, output_field=IntegerField()), 0))
            .filter(judgement_count__lt=F("k") - F("live"))
        )
    qs = qs.filter(id__in=mine_released) if skipped else qs.exclude(id__in=mine_released)
    # Highest priority first (active learning, see ml.services.active_learning; 0 = creation order),
    # then oldest first, as the (status, -priority, id) index of Pair is laid out.
    return qs.order_by("-priority", "id")



def _lock_window(candidates, window: int) -> list[Pair]:
    locked = list(candidates.select_for_update(skip_locked=True, of=("self",))[:window])
    if locked:
        return locked
    # Everything available is locked by someone else right now: wait for one lock rather than
    # answering "nothing left" while pairs are merely busy for a few milliseconds.
    return list(candidates.select_for_update(of=("self",))[:1])


def next_lease(user, *, task: str | None = None, discipline: str | None = None) -> Lease | None:
    """The user's live lease, or a new one (gold mixed in at ``GOLD_RATE``), or None if nothing
    is left. Raises :class:`AnnotatorPaused` for a paused annotator."""
    with transaction.atomic():
        _ensure_not_paused(user)
        lease = live_lease_of(user)
        if lease is not None:
            return lease
        tasks = allowed_tasks(user, task=task, discipline=discipline)
        now = _now()
        kinds = (True, False) if random.random() < settings.GOLD_RATE else (False, True)
        for skipped in (False, True):
            for gold in kinds:
                pair = _pick(user, now, tasks, skipped=skipped, gold=gold)
                if pair is not None:
                    return _create_lease(user, pair, now)
    return None


def _pick(user, now, tasks, *, skipped: bool, gold: bool) -> Pair | None:
    """Lock a window of candidates and pick one at random; the window stays locked until commit.

    A window whose pairs all turn out full is rolled back to its savepoint, which releases their
    locks, so the next window (which may wait for a lock) is taken holding no pair lock."""
    full: set[int] = set()
    while True:
        savepoint = transaction.savepoint()
        candidates = _candidates(user, now, tasks, skipped=skipped, gold=gold).exclude(id__in=full)
        locked = _lock_window(candidates, settings.QUEUE_LOCK_WINDOW)
        if gold:
            open_pairs = locked
        else:
            counts = _live_counts([p.id for p in locked], now)
            open_pairs = [p for p in locked if p.judgement_count + counts.get(p.id, 0) < p.k]
        if open_pairs or not locked:
            transaction.savepoint_commit(savepoint)
            return random.choice(open_pairs) if open_pairs else None
        # The statement's snapshot was stale for every pair in the window: they are full.
        transaction.savepoint_rollback(savepoint)
        full.update(p.id for p in locked)


def _create_lease(user, pair: Pair, now, *, order: tuple[int, int] | None = None) -> Lease:
    if order is None:
        order = (pair.image_correct_id, pair.image_wrong_id)
        if random.random() < 0.5:
            order = order[::-1]
    try:
        with transaction.atomic():
            lease = Lease.objects.create(
                pair=pair,
                annotator=user,
                left_image_id=order[0],
                right_image_id=order[1],
                expires_at=now + settings.LEASE_TTL,
            )
    except IntegrityError:
        # A concurrent request of the same annotator created their one live lease first.
        existing = live_lease_of(user)
        if existing is None:
            raise
        return existing
    return Lease.objects.select_related("pair__tuple__task__discipline").get(pk=lease.pk)


def _own_lease(user, lease_id) -> Lease:
    lease = Lease.objects.filter(pk=lease_id, annotator=user).only("id", "pair_id").first()
    if lease is None:
        raise LeaseNotFound("No such lease for this user.")
    return lease


def _lock_pair_and_lease(user, lease_id) -> tuple[Pair, Lease]:
    """Lock the pair first, then the lease: the same order everywhere, so no deadlocks."""
    pair_id = _own_lease(user, lease_id).pair_id
    pair = Pair.objects.select_for_update().get(pk=pair_id)
    lease = Lease.objects.select_for_update().get(pk=lease_id)
    return pair, lease


def _has_room_for(pair: Pair, lease: Lease, now) -> bool:
    """Whether an expired-but-unreclaimed lease may still be honoured: the slot it held is free
    (a gold pair has no slots: it takes judgements until it is retired)."""
    if pair.is_gold:
        return pair.status != Pair.Status.RETIRED
    others = _live_counts([pair.id], now, exclude_lease=lease.id).get(pair.id, 0)
    return pair.status == Pair.Status.OPEN and pair.judgement_count + others < pair.k


def submit_judgement(user, lease_id, data: JudgementInput) -> tuple[Judgement, bool]:
    """Record a judgement through the user's lease and end the lease.

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
            Lease.objects.filter(pk=lease.pk).update(state=Lease.State.EXPIRED, ended_at=now)
            raise LeaseNotActive("This lease expired and its pair went to someone else; ask for the next pair.")
        if pair.status == Pair.Status.RETIRED or (not pair.is_gold and pair.judgement_count >= pair.k):
            raise PairUnavailable("This pair no longer takes judgements.")
        chosen = {
            Judgement.Choice.LEFT: lease.left_image_id,
            Judgement.Choice.RIGHT: lease.right_image_id,
        }.get(data.choice)
        judgement = Judgement.objects.create(
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
        )
        pair.judgement_count += 1
        if not pair.is_gold and pair.judgement_count >= pair.k:
            pair.status = Pair.Status.COMPLETE
        pair.save(update_fields=["judgement_count", "status"])
        lease.state, lease.ended_at = Lease.State.JUDGED, now
        lease.save(update_fields=["state", "ended_at"])
        audit.record(user, "judgement.created", judgement, after=_judgement_state(judgement))
        judgements_changed.send(sender=Judgement, pair_id=pair.id, actor=user)
        return judgement, True


def _judgement_state(judgement: Judgement) -> dict:
    return {"pair": judgement.pair_id, "annotator": judgement.annotator_id, "choice": judgement.choice,
            "chosen_image": judgement.chosen_image_id}


def heartbeat(user, lease_id) -> Lease:
    """Extend a live lease; revive an expired one only if its slot is still free."""
    now = _now()
    extended = Lease.objects.filter(
        pk=lease_id, annotator=user, state=Lease.State.ACTIVE, expires_at__gt=now
    ).update(expires_at=now + settings.LEASE_TTL, heartbeat_at=now)
    if not extended:
        with transaction.atomic():
            pair, lease = _lock_pair_and_lease(user, lease_id)
            if lease.state != Lease.State.ACTIVE:
                raise LeaseNotActive(f"This lease is {lease.state}; ask for the next pair.")
            if lease.expires_at <= now and not _has_room_for(pair, lease, now):
                Lease.objects.filter(pk=lease.pk).update(state=Lease.State.EXPIRED, ended_at=now)
                raise LeaseNotActive("This lease expired and its pair went to someone else; ask for the next pair.")
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


def undo_last_judgement(user) -> Lease:
    """Take back the user's latest judgement (inside the undo window) and lease its pair to them
    again in the same left/right order, so the page shows it for a new decision. A paused
    annotator may not undo: the pause follows a gold judgement, and undoing it would let them
    change a gold answer they now know was wrong."""
    with transaction.atomic():
        _ensure_not_paused(user)
        now = _now()
        recent = Judgement.objects.filter(annotator=user, created_at__gte=now - settings.UNDO_WINDOW)
        latest = recent.order_by("-created_at", "-id").only("id", "pair_id").first()
        if latest is None:
            raise NothingToUndo("There is no judgement of yours recent enough to undo.")
        pair = Pair.objects.select_for_update().get(pk=latest.pair_id)
        judgement = Judgement.objects.select_related("lease").filter(pk=latest.pk).first()
        if judgement is None:
            raise NothingToUndo("That judgement was already undone.")
        Lease.objects.filter(annotator=user, state=Lease.State.ACTIVE).update(
            state=Lease.State.CANCELLED, ended_at=now
        )
        old_lease = judgement.lease
        audit.record(user, "judgement.undone", judgement, before=_judgement_state(judgement))
        judgement.delete()
        Lease.objects.filter(pk=old_lease.pk).update(state=Lease.State.CANCELLED)
        pair.judgement_count -= 1
        if pair.status == Pair.Status.COMPLETE:
            pair.status = Pair.Status.OPEN
        pair.save(update_fields=["judgement_count", "status"])
        judgements_changed.send(sender=Judgement, pair_id=pair.id, actor=user)
        return _create_lease(user, pair, now, order=(old_lease.left_image_id, old_lease.right_image_id))


def reclaim_expired_leases() -> int:
    """Mark every lease past its expiry as expired; returns how many. Run by Celery beat."""
    now = _now()
    return Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lte=now).update(
        state=Lease.State.EXPIRED, ended_at=now
    )

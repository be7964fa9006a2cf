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
first locks that pair's row (``SELECT ... FOR UPDATE``), then counts the pair's live leases in a
*new* statement (for a new lease, the INSERT itself, which writes the row only if there is room),
so under READ COMMITTED it sees everything committed by the previous holder of the lock. Candidate pairs are locked with ``skip_locked`` in a small window, so concurrent
annotators spread over different pairs instead of queueing on one; the pick inside the window is
random. Gold pairs are locked the same way: they need no capacity check, but marking, unmarking
and retiring change them under the same lock. A ``next`` transaction waits for a pair lock only
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
when one exists. The candidate statement walks the ``(status, -priority, id)`` index of open
pairs from its head and stops after the window, so its cost depends on how many pairs near the
head this annotator cannot take (pairs they judged that wait for others, pairs other annotators
hold), not on how many pairs there are; the allowed tasks are passed to it as literal ids, which
keeps PostgreSQL's estimates, and so that plan, right. A judgement runs: the pair and lease locks
(one statement), the judgement, pair, lease and audit writes (one statement on PostgreSQL,
:func:`annotation.services.rows.insert_with`), and the consensus (read and write, passed the locked
pair through ``judgements_changed``). Every statement of ``next`` and ``judgement`` is SQL written
here or in :mod:`annotation.services.rows` (table and column names from the models) because
building and compiling them through the ORM cost several times the CPU of running them;
tests/test_bench_queue_fast_paths.py checks they select and write what the ORM did.

On SQLite there are no row locks: the settings open every transaction with ``BEGIN IMMEDIATE``,
which takes the database write lock up front, so queue transactions run one at a time — correct,
not concurrent.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Discipline, Expertise, Judgement, Lease, Pair, PromptTuple, Task
from annotation.services import audit, rows
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


class AlreadyJudged(QueueError):
    code = "already_judged"


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


def _allowed_task_rows(user, *, task: str | None = None, discipline: str | None = None):
    own_tasks = Expertise.tasks.through.objects.filter(expertise__user=user).values("task_id")
    own_disciplines = Expertise.disciplines.through.objects.filter(expertise__user=user).values("discipline_id")
    qs = Task.objects.filter(Q(id__in=own_tasks) | Q(discipline_id__in=own_disciplines))
    if task:
        qs = qs.filter(code__iexact=task)
    if discipline:
        qs = qs.filter(discipline__slug__iexact=discipline)
    return qs


def allowed_tasks(user, *, task: str | None = None, discipline: str | None = None):
    """Tasks inside the user's expertise, narrowed by the optional filters (a queryset of ids)."""
    return _allowed_task_rows(user, task=task, discipline=discipline).values("id")


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


@functools.lru_cache(maxsize=256)
def _live_counts_sql(vendor: str, n_pairs: int, exclude: bool) -> str:
    del vendor  # part of the cache key only
    pair, state, expires = rows.col("l", Lease, "pair"), rows.col("l", Lease, "state"), rows.col("l", Lease, "expires_at")
    return (f"SELECT {pair}, COUNT(*) FROM {rows.table(Lease)} l WHERE {pair} IN ({', '.join(['%s'] * n_pairs)}) "
            f"AND {state} = %s AND {expires} > %s" + (f" AND {rows.col('l', Lease, 'id')} <> %s" if exclude else "")
            + f" GROUP BY {pair}")


def _live_counts(pair_ids, now, *, exclude_lease=None) -> dict[int, int]:
    """Live leases per pair (a new statement: under READ COMMITTED it sees every commit so far)."""
    if not pair_ids:
        return {}
    conn = rows.db()
    params = [*pair_ids, Lease.State.ACTIVE, conn.ops.adapt_datetimefield_value(now)]
    if exclude_lease is not None:
        params.append(exclude_lease)
    with rows.cursor() as cursor:
        cursor.execute(_live_counts_sql(conn.vendor, len(pair_ids), exclude_lease is not None), params)
        return dict(cursor.fetchall())


def _ensure_not_paused(user) -> None:
    if Expertise.objects.filter(user=user, paused=True).exists():
        raise AnnotatorPaused(
            "Your account is paused pending review of your gold answers; an admin can restore it."
        )


@dataclass(frozen=True)
class _AnnotatorState:
    paused: bool
    has_active_lease: bool
    tasks: dict[int, tuple]  # the allowed tasks (after the filters): id -> their row of the state statement

    def task(self, task_id: int) -> Task:
        """An allowed task with its discipline, as a lease's payload shows them (built only for the
        pair picked: most requests would otherwise build every allowed task for nothing)."""
        row = self.tasks[task_id]
        found = rows.load(Task, _TASK_FIELDS, row[:5])  # description and queue_order are deferred
        found.discipline = rows.load(Discipline, _DISCIPLINE_FIELDS, (row[3], row[5], row[6]))
        return found


_TASK_FIELDS = ("id", "code", "name", "discipline_id", "kind")
_DISCIPLINE_FIELDS = ("id", "slug", "name")


@functools.lru_cache(maxsize=16)
def _annotator_state_sql(vendor: str, by_task: bool, by_discipline: bool) -> tuple[str, str]:
    """The state statement (parameters: user, True, user, active, user, user[, task][, discipline])
    and its fallback for an annotator with no allowed task (the first four parameters)."""
    del vendor  # part of the cache key only
    ex, ex_tasks, ex_disc = Expertise, Expertise.tasks.through, Expertise.disciplines.through
    flags = (f"EXISTS (SELECT 1 FROM {rows.table(ex)} e WHERE {rows.col('e', ex, 'user')} = %s "
             f"AND {rows.col('e', ex, 'paused')} = %s), "
             f"EXISTS (SELECT 1 FROM {rows.table(Lease)} l WHERE {rows.col('l', Lease, 'annotator')} = %s "
             f"AND {rows.col('l', Lease, 'state')} = %s)")

    def own(through, field):
        return (f"SELECT {rows.col('x', through, field)} FROM {rows.table(through)} x INNER JOIN {rows.table(ex)} e "
                f"ON {rows.col('e', ex, 'id')} = {rows.col('x', through, 'expertise')} WHERE {rows.col('e', ex, 'user')} = %s")

    sql = (f"SELECT {', '.join(rows.col('t', Task, f) for f in _TASK_FIELDS)}, {rows.col('d', Discipline, 'slug')}, "
           f"{rows.col('d', Discipline, 'name')}, {flags} FROM {rows.table(Task)} t INNER JOIN {rows.table(Discipline)} d "
           f"ON {rows.col('d', Discipline, 'id')} = {rows.col('t', Task, 'discipline')} "
           f"WHERE ({rows.col('t', Task, 'id')} IN ({own(ex_tasks, 'task')}) "
           f"OR {rows.col('t', Task, 'discipline')} IN ({own(ex_disc, 'discipline')}))")
    if by_task:  # the ORM's iexact
        sql += f" AND UPPER({rows.col('t', Task, 'code')}) = UPPER(%s)"
    if by_discipline:
        sql += f" AND UPPER({rows.col('d', Discipline, 'slug')}) = UPPER(%s)"
    return sql, f"SELECT {flags}"


def _annotator_state(user, *, task: str | None, discipline: str | None) -> _AnnotatorState:
    """Pause, whether an active lease exists, and the allowed tasks (:func:`allowed_tasks`, same
    rules) with what a lease's payload shows of them: one statement, written in SQL (see the module
    docstring; a second one only for an annotator with no allowed task)."""
    conn = rows.db()
    sql, fallback = _annotator_state_sql(conn.vendor, bool(task), bool(discipline))
    flag_params = [user.pk, True, user.pk, Lease.State.ACTIVE]
    params = [*flag_params, user.pk, user.pk, *([task] if task else []), *([discipline] if discipline else [])]
    with rows.cursor() as cursor:
        cursor.execute(sql, params)
        found_rows = cursor.fetchall()
        if not found_rows:
            cursor.execute(fallback, flag_params)
            paused, active = cursor.fetchone()
            return _AnnotatorState(paused=bool(paused), has_active_lease=bool(active), tasks={})
    return _AnnotatorState(paused=bool(found_rows[0][7]), has_active_lease=bool(found_rows[0][8]),
                           tasks={row[0]: row for row in found_rows})


# --- The candidate window (SQL written once per shape and cached; see the module docstring) ---

_PAIR_FIELDS = ("id", "tuple_id", "image_correct_id", "image_wrong_id", "status", "k", "is_gold",
                "judgement_count", "priority")
_TUPLE_FIELDS = ("id", "implicit_prompt", "task_id")


@functools.lru_cache(maxsize=512)
def _window_sql(vendor: str, n_tasks: int, n_full: int, *, skipped: bool, gold: bool, limit: int,
                skip_locked: bool) -> str:
    """Pairs in the user's tasks that they have not judged. Normal pairs (``gold=False``) must be
    open with capacity as far as this statement's snapshot can tell (re-checked under the lock);
    gold pairs only must not be retired. ``skipped`` selects the pairs the user released
    earlier, which come only after everything else. Highest priority first (active learning, see
    ml.services.active_learning; 0 = creation order), then oldest first, as the
    ``(status, -priority, id)`` index of Pair is laid out, so PostgreSQL walks that index from its
    head and stops after ``limit`` rows. ``skip_locked``: lock the rows, skipping those locked by
    others; otherwise a plain read. Parameters: see :func:`_window_params`."""
    del vendor  # part of the cache key only
    pc = lambda name: rows.col("p", Pair, name)  # noqa: E731
    select = ", ".join([pc(f) for f in _PAIR_FIELDS] + [rows.col("t", PromptTuple, f) for f in _TUPLE_FIELDS])
    where = [f"{pc('is_gold')} = %s", f"{rows.col('t', PromptTuple, 'task')} IN ({', '.join(['%s'] * n_tasks)})"]
    if gold:
        where.append(f"{pc('status')} <> %s")
    else:
        live = (f"SELECT COUNT(*) FROM {rows.table(Lease)} l WHERE {rows.col('l', Lease, 'pair')} = {pc('id')} "
                f"AND {rows.col('l', Lease, 'state')} = %s AND {rows.col('l', Lease, 'expires_at')} > %s")
        where += [f"{pc('status')} = %s", f"{pc('judgement_count')} + ({live}) < {pc('k')}"]
    where.append(f"NOT EXISTS (SELECT 1 FROM {rows.table(Judgement)} j WHERE {rows.col('j', Judgement, 'pair')} = {pc('id')} "
                 f"AND {rows.col('j', Judgement, 'annotator')} = %s)")
    released = (f"EXISTS (SELECT 1 FROM {rows.table(Lease)} r WHERE {rows.col('r', Lease, 'pair')} = {pc('id')} "
                f"AND {rows.col('r', Lease, 'annotator')} = %s AND {rows.col('r', Lease, 'state')} = %s)")
    where.append(released if skipped else f"NOT {released}")
    if n_full:
        where.append(f"{pc('id')} NOT IN ({', '.join(['%s'] * n_full)})")
    lock = ""
    if skip_locked and connection.features.has_select_for_update:  # else a plain read
        lock = " FOR UPDATE"
        if connection.features.has_select_for_update_of:
            lock += " OF p"
        if connection.features.has_select_for_update_skip_locked:
            lock += " SKIP LOCKED"
    return (
        f"SELECT {select} FROM {rows.table(Pair)} p "
        f"INNER JOIN {rows.table(PromptTuple)} t ON {rows.col('t', PromptTuple, 'id')} = {pc('tuple')} "
        f"WHERE {' AND '.join(where)} ORDER BY {pc('priority')} DESC, {pc('id')} ASC LIMIT {int(limit)}{lock}"
    )


def _window_params(user, now, task_ids, full, *, skipped: bool, gold: bool) -> list:
    params = [gold, *task_ids]
    if gold:
        params.append(Pair.Status.RETIRED)
    else:
        params += [Pair.Status.OPEN, Lease.State.ACTIVE, rows.db().ops.adapt_datetimefield_value(now)]
    params += [user.pk, user.pk, Lease.State.RELEASED, *full]
    return params


def _select_window(user, now, task_ids, full, *, skipped: bool, gold: bool, limit: int,
                   skip_locked: bool) -> list[tuple]:
    """The window's rows (``_PAIR_FIELDS`` then ``_TUPLE_FIELDS``); :func:`_as_pair` builds the one picked."""
    conn = rows.db()
    sql = _window_sql(conn.vendor, len(task_ids), len(full), skipped=skipped, gold=gold, limit=limit,
                      skip_locked=skip_locked)
    with rows.cursor() as cursor:
        cursor.execute(sql, _window_params(user, now, task_ids, sorted(full), skipped=skipped, gold=gold))
        return cursor.fetchall()


_ID = _PAIR_FIELDS.index("id")


def _as_pair(row: tuple) -> Pair:
    """A window row as a Pair with its tuple loaded (created_at and the tuple's other fields deferred)."""
    n = len(_PAIR_FIELDS)
    pair = rows.load(Pair, _PAIR_FIELDS, row[:n])
    pair.tuple = rows.load(PromptTuple, _TUPLE_FIELDS, row[n:])
    return pair


class _Restart(Exception):
    """Roll the ``next`` transaction back (releasing its pair locks) and start it again."""


def _lock_window(user, now, task_ids, full, *, skipped: bool, gold: bool) -> list[tuple]:
    """Lock up to ``QUEUE_LOCK_WINDOW`` candidates that nobody else holds, skipping ``full``."""
    args = dict(skipped=skipped, gold=gold)
    locked = _select_window(user, now, task_ids, full, limit=settings.QUEUE_LOCK_WINDOW, skip_locked=True, **args)
    if locked:
        return locked
    # Everything available is locked by someone else right now: wait for one lock rather than
    # answering "nothing left" while pairs are merely busy for a few milliseconds — but never
    # while holding other pair locks (see the locking policy), and on one row named by its id:
    # a scan that waits (``LIMIT 1 FOR UPDATE``) keeps the locks of rows it passes over after
    # re-checking them, so two such scans deadlock (seen under 32 racing annotators).
    if full:
        raise _Restart
    first = _select_window(user, now, task_ids, full, limit=1, skip_locked=False, **args)  # no lock
    if not first:
        return []
    _wait_for_pair(first[0][_ID])
    locked = _select_window(user, now, task_ids, full, limit=settings.QUEUE_LOCK_WINDOW, skip_locked=True, **args)
    if not locked:
        raise _Restart  # the pair waited for is taken: start again, holding nothing
    return locked


def _wait_for_pair(pair_id: int) -> None:
    if connection.features.has_select_for_update:
        with rows.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {rows.table(Pair)} WHERE {connection.ops.quote_name('id')} = %s FOR UPDATE",
                           [pair_id])


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
    state = _annotator_state(user, task=task, discipline=discipline)
    if state.paused:
        _ensure_not_paused(user)  # raises
    if state.has_active_lease:
        lease = live_lease_of(user)
        if lease is not None:
            return lease
    if not state.tasks:
        return None
    task_ids = sorted(state.tasks)
    now = _now()
    kinds = (True, False) if random.random() < settings.GOLD_RATE else (False, True)
    for skipped in (False, True):
        for gold in kinds:
            lease = _lease_from_window(user, state, now, task_ids, skipped=skipped, gold=gold)
            if lease is not None:
                return lease
    return None


def _lease_from_window(user, state: _AnnotatorState, now, task_ids, *, skipped: bool, gold: bool) -> Lease | None:
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
        locked = _lock_window(user, now, task_ids, full, skipped=skipped, gold=gold)
        if not locked:
            return None
        random.shuffle(locked)
        for row in locked:
            pair = _as_pair(row)
            pair.tuple.task = state.task(pair.tuple.task_id)  # for the payload
            lease = _create_lease(user, pair, now, savepoint=False, if_room=not gold)
            if lease is not None:
                return lease
            full.add(row[_ID])  # the window's snapshot was stale for this pair: it is full


@functools.lru_cache(maxsize=4)
def _room_sql(vendor: str) -> str:
    """The lease INSERT's condition (parameters: pair, active, now, k - judgements)."""
    del vendor  # part of the cache key only
    return (f"(SELECT COUNT(*) FROM {rows.table(Lease)} l WHERE {rows.col('l', Lease, 'pair')} = %s "
            f"AND {rows.col('l', Lease, 'state')} = %s AND {rows.col('l', Lease, 'expires_at')} > %s) < %s")


def _create_lease(user, pair: Pair, now, *, order: tuple[int, int] | None = None, savepoint: bool = True,
                  if_room: bool = False) -> Lease | None:
    """Lease ``pair`` (loaded with its tuple, task and discipline, which the payload shows) to the
    user. With ``savepoint=False`` a concurrent lease of the same annotator raises IntegrityError
    and the caller's transaction is lost (:func:`next_lease` starts a new one); otherwise the
    existing live lease is returned. ``if_room`` (with ``savepoint=False``, the pair locked and
    loaded under the lock): only if the pair's live leases and judgements stay under k, else None."""
    if order is None:
        order = (pair.image_correct_id, pair.image_wrong_id)
        if random.random() < 0.5:
            order = order[::-1]
    fields = dict(pair=pair, annotator=user, left_image_id=order[0], right_image_id=order[1],
                  expires_at=now + settings.LEASE_TTL)
    if not savepoint:
        if not if_room:
            return rows.insert(Lease(**fields))
        room = [pair.id, Lease.State.ACTIVE, rows.db().ops.adapt_datetimefield_value(now), pair.k - pair.judgement_count]
        return rows.insert(Lease(**fields), only_if=_room_sql(rows.db().vendor), params=room)
    try:
        with transaction.atomic():
            lease = Lease.objects.create(**fields)
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


_LEASE_FIELDS = ("id", "pair_id", "annotator_id", "left_image_id", "right_image_id", "state", "expires_at")


@functools.lru_cache(maxsize=4)
def _lock_sql(vendor: str) -> str:
    """The pair and the lease in one statement (parameters: lease, user). ``FOR UPDATE OF p, l``
    locks the rows in that order (PostgreSQL takes a statement's row locks in the order its
    ``OF`` clause names them), pair first as everywhere else."""
    del vendor  # part of the cache key only
    lock = ""
    if connection.features.has_select_for_update:
        lock = " FOR UPDATE OF p, l" if connection.features.has_select_for_update_of else " FOR UPDATE"
    return (f"SELECT {', '.join(rows.col('p', Pair, f) for f in _PAIR_FIELDS)}, "
            f"{', '.join(rows.col('l', Lease, f) for f in _LEASE_FIELDS)} FROM {rows.table(Pair)} p "
            f"INNER JOIN {rows.table(Lease)} l ON {rows.col('l', Lease, 'pair')} = {rows.col('p', Pair, 'id')} "
            f"WHERE {rows.col('l', Lease, 'id')} = %s AND {rows.col('l', Lease, 'annotator')} = %s{lock}")


def _lock_pair_and_lease(user, lease_id) -> tuple[Pair, Lease]:
    """Lock the pair first, then the lease: the same order everywhere, so no deadlocks. The pair
    is found through the user's own lease (404 for anyone else's), both in one statement written
    in SQL because this runs on every judgement (fields the queue does not use are deferred)."""
    conn = rows.db()
    with rows.cursor() as cursor:
        cursor.execute(_lock_sql(conn.vendor), [lease_id, user.pk])
        row = cursor.fetchone()
    if row is None:
        raise LeaseNotFound("No such lease for this user.")
    n = len(_PAIR_FIELDS)
    return rows.load(Pair, _PAIR_FIELDS, row[:n], conn), rows.load(Lease, _LEASE_FIELDS, row[n:], conn)


def _has_room_for(pair: Pair, lease: Lease, now) -> bool:
    """Whether an expired-but-unreclaimed lease may still be honoured: the slot it held is free
    (a gold pair has no slots: it takes judgements until it is retired)."""
    if pair.is_gold:
        return pair.status != Pair.Status.RETIRED
    others = _live_counts([pair.id], now, exclude_lease=lease.id).get(pair.id, 0)
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
            raise _SlotGone(lease.pk, now)
        if pair.status == Pair.Status.RETIRED or (not pair.is_gold and pair.judgement_count >= pair.k):
            raise PairUnavailable("This pair no longer takes judgements.")
        chosen = {
            Judgement.Choice.LEFT: lease.left_image_id,
            Judgement.Choice.RIGHT: lease.right_image_id,
        }.get(data.choice)
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
        )
        count = pair.judgement_count + 1
        complete = not pair.is_gold and count >= pair.k
        # the judgement, the pair's count, the lease's end and the audit event: one statement
        rows.insert_with(
            judgement,
            updates=[(pair, {"judgement_count": count, "status": Pair.Status.COMPLETE if complete else pair.status}),
                     (lease, {"state": Lease.State.JUDGED, "ended_at": now})],
            then=audit.event(user, "judgement.created", judgement, after=_judgement_state(judgement)),
            link="target_id",
        )
        judgements_changed.send(sender=Judgement, pair_id=pair.id, actor=user, pair=pair)
        return judgement, True


def _judgement_state(judgement: Judgement) -> dict:
    return {"pair": judgement.pair_id, "annotator": judgement.annotator_id, "choice": judgement.choice,
            "chosen_image": judgement.chosen_image_id}


@_expire_when_slot_gone
def heartbeat(user, lease_id) -> Lease:
    """Extend a live lease; revive an expired one only if its slot is still free.

    The fast path (one UPDATE, no pair lock) is taken only while the lease has more than half its
    TTL left. Closer to expiry the decision is made under the pair lock like every other capacity
    decision: otherwise a heartbeat that read the clock just before the expiry and wrote just
    after it could extend a lease whose slot a concurrent ``next`` had already counted as free and
    handed on (tests/test_reliability_races.py). A fast-path UPDATE would have to be delayed by
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
        judgements_changed.send(sender=Judgement, pair_id=pair.id, actor=user, pair=pair)
        return _create_lease(user, pair, now, order=(old_lease.left_image_id, old_lease.right_image_id))


def reclaim_expired_leases() -> int:
    """Mark every lease past its expiry as expired; returns how many. Run by Celery beat."""
    now = _now()
    return Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lte=now).update(
        state=Lease.State.EXPIRED, ended_at=now
    )

"""The SQL of the annotator's hot path: every statement the queue sends on each ``next`` and judgement,
and the token check in front of every queue request. Nothing else in the project writes SQL for these
tables; everything else the queue does goes through the ORM.

Why SQL here and not the ORM: these statements run on every request of every annotator, and building and
compiling them through the ORM costs several times the CPU of running them (``bench/queue_load.py``,
docs/benchmarks/queue.md). Each statement below is a literal a person can paste into ``psql``: table and
column names are the models' own (``tests/annotation/test_queue_sql.py`` checks every one against
``_meta.db_table`` and the fields' columns, and the rows against the ORM's). A few statements have holes,
filled with placeholders only:

* ``{ids}``: one ``%s`` per id of an ``IN`` list (``in_list``);
* ``{lock}``: the row-lock clause on PostgreSQL (``FOR UPDATE …``), empty on SQLite, the embedded demo
  database, which has no row locks (the settings run every transaction with ``BEGIN IMMEDIATE`` there, so
  queue transactions run one at a time: correct, not concurrent).

The values of the state columns are the models' choices (``'active'``, ``'open'``, ``'retired'``…), written
out. Statements run on Django's own cursor (``connection.cursor()``), so connection health checks, error
wrapping and query logging behave as for the ORM; rows become model instances with the public
``Model.from_db`` after the same value conversions the ORM applies (``from_db``, below).
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation.models import AuditEvent, Discipline, Judgement, Lease, Pair, PromptTuple, Task

# --- Turning rows into model instances ----------------------------------------------------------


@functools.cache
def _conversions(model, names: tuple[str, ...]) -> tuple:
    """``(index, expression, converters)`` for the fields of ``names`` whose database values need the
    conversions the ORM applies (dates on SQLite, for example); most need none."""
    out = []
    for index, name in enumerate(names):
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        converters = tuple(connection.ops.get_db_converters(column) + field.get_db_converters(connection))
        if converters:
            out.append((index, column, converters))
    return tuple(out)


def from_db(model, names: tuple[str, ...], values):
    """A ``model`` instance from a row of the fields ``names`` (attnames; the others deferred)."""
    plan = _conversions(model, names)
    if plan:
        values = list(values)
        for index, column, converters in plan:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
    return model.from_db(connection.alias, names, values)


def in_list(n: int) -> str:
    return ", ".join(["%s"] * n)


def lock(clause: str) -> str:
    """``clause`` (``FOR UPDATE …``) where the database has row locks, else nothing."""
    return f" {clause}" if connection.features.has_select_for_update else ""


def _db_time(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- The annotator's state ----------------------------------------------------------------------

# One statement instead of three ORM queries (pause, live lease, allowed tasks with their discipline):
# the tasks the annotator may judge, by task or by discipline expertise — THE rule of what an annotator
# may see; ``queue.allowed_tasks`` uses this same statement — with what a lease's payload shows of each,
# two flags, and per task the annotator's qualification (annotation/services/qualification.py): '' when
# the task has no qualification set (its unretired ``is_qualification`` pairs, found through the small
# ``pair_qualification`` partial index), else 'pending' (no Qualification row), 'passed' or 'failed'.
# Parameters: user (5 times), then the optional task code and discipline slug (NULL: any).
ANNOTATOR_STATE = """
SELECT t.id, t.code, t.name, t.discipline_id, t.kind, d.slug, d.name,
       EXISTS (SELECT 1 FROM annotation_expertise e WHERE e.user_id = %(user)s AND e.paused) AS paused,
       EXISTS (SELECT 1 FROM annotation_lease l WHERE l.annotator_id = %(user)s AND l.state = 'active') AS leased,
       CASE WHEN qs.task_id IS NULL THEN '' WHEN q.passed IS NULL THEN 'pending'
            WHEN q.passed THEN 'passed' ELSE 'failed' END AS qualification
FROM annotation_task t
JOIN annotation_discipline d ON d.id = t.discipline_id
LEFT JOIN (SELECT DISTINCT qt.task_id FROM annotation_pair qp
           JOIN annotation_prompttuple qt ON qt.id = qp.tuple_id
           WHERE qp.is_qualification AND qp.status <> 'retired') qs ON qs.task_id = t.id
LEFT JOIN annotation_qualification q ON q.task_id = t.id AND q.user_id = %(user)s
WHERE (t.id IN (SELECT x.task_id FROM annotation_expertise_tasks x
                JOIN annotation_expertise e ON e.id = x.expertise_id WHERE e.user_id = %(user)s)
       OR t.discipline_id IN (SELECT x.discipline_id FROM annotation_expertise_disciplines x
                              JOIN annotation_expertise e ON e.id = x.expertise_id WHERE e.user_id = %(user)s))
  AND (CAST(%(task)s AS text) IS NULL OR UPPER(t.code) = UPPER(%(task)s))
  AND (CAST(%(discipline)s AS text) IS NULL OR UPPER(d.slug) = UPPER(%(discipline)s))
"""

# The two flags alone, for an annotator with no allowed task (the statement above returns no row then).
ANNOTATOR_FLAGS = """
SELECT EXISTS (SELECT 1 FROM annotation_expertise e WHERE e.user_id = %(user)s AND e.paused),
       EXISTS (SELECT 1 FROM annotation_lease l WHERE l.annotator_id = %(user)s AND l.state = 'active')
"""

TASK_FIELDS = ("id", "code", "name", "discipline_id", "kind")
DISCIPLINE_FIELDS = ("id", "slug", "name")


def annotator_state(user_id: int, *, task: str | None, discipline: str | None) -> tuple[bool, bool, dict[int, Task]]:
    """``(paused, has an active lease, allowed tasks by id)``; each task carries its discipline."""
    paused, leased, tasks, _ = annotator_queue_state(user_id, task=task, discipline=discipline)
    return paused, leased, tasks


def annotator_queue_state(
    user_id: int, *, task: str | None, discipline: str | None
) -> tuple[bool, bool, dict[int, Task], dict[int, str]]:
    """:func:`annotator_state` and, per allowed task, the annotator's qualification ('' when the task has no
    qualification set, else 'pending', 'passed' or 'failed'); the same one statement."""
    params = {"user": user_id, "task": task, "discipline": discipline}
    found = _fetch(ANNOTATOR_STATE, params)
    if not found:
        paused, leased = _fetch(ANNOTATOR_FLAGS, params)[0]
        return bool(paused), bool(leased), {}, {}
    tasks = {}
    qualification = {}
    for row in found:
        one = from_db(Task, TASK_FIELDS, row[:5])
        one.discipline = from_db(Discipline, DISCIPLINE_FIELDS, (row[3], row[5], row[6]))
        tasks[one.id] = one
        qualification[one.id] = row[9]
    return bool(found[0][7]), bool(found[0][8]), tasks, qualification


# --- The candidate window -----------------------------------------------------------------------

# The next pairs this annotator may lease, highest priority first (active learning; 0 = creation order),
# then oldest: the order of Pair's (status, -priority, id) index, so PostgreSQL walks that index from its
# head and stops after LIMIT rows — the cost depends on how many pairs near the head the annotator cannot
# take, not on how many pairs there are. The ORM cannot say ``FOR UPDATE OF p SKIP LOCKED`` over this
# join with a correlated count in one statement it compiles cheaply. The allowed tasks come as literal
# ids, which keeps PostgreSQL's row estimates, and so this plan, right. ``skipped``: the pairs the
# annotator released earlier (they come after everything else). Parameters: see ``window``.
OPEN_WINDOW = """
SELECT p.id, p.tuple_id, p.image_correct_id, p.image_wrong_id, p.status, p.k, p.is_gold, p.is_qualification,
       p.judgement_count, p.priority, t.id, t.implicit_prompt, t.task_id
FROM annotation_pair p
JOIN annotation_prompttuple t ON t.id = p.tuple_id
WHERE p.is_gold = false AND p.status = 'open' AND t.task_id IN ({ids})
  AND p.judgement_count + (SELECT COUNT(*) FROM annotation_lease l
                           WHERE l.pair_id = p.id AND l.state = 'active' AND l.expires_at > %s) < p.k
  AND NOT EXISTS (SELECT 1 FROM annotation_judgement j WHERE j.pair_id = p.id AND j.annotator_id = %s)
  AND EXISTS (SELECT 1 FROM annotation_lease r
              WHERE r.pair_id = p.id AND r.annotator_id = %s AND r.state = 'released') = %s
  AND p.id NOT IN ({full})
ORDER BY p.priority DESC, p.id ASC
LIMIT %s{lock}
"""

# The same for gold pairs: every annotator of their task judges each one once, outside k, until the
# pair is retired (annotation/services/queue.py explains gold). ``is_qualification``: true for the
# qualification window (a pending annotator's tasks: only the set's pairs), false for the usual gold window
# (the set's pairs are not mixed in as gold: qualified annotators have judged them all).
GOLD_WINDOW = """
SELECT p.id, p.tuple_id, p.image_correct_id, p.image_wrong_id, p.status, p.k, p.is_gold, p.is_qualification,
       p.judgement_count, p.priority, t.id, t.implicit_prompt, t.task_id
FROM annotation_pair p
JOIN annotation_prompttuple t ON t.id = p.tuple_id
WHERE p.is_gold = true AND p.is_qualification = %s AND p.status <> 'retired' AND t.task_id IN ({ids})
  AND NOT EXISTS (SELECT 1 FROM annotation_judgement j WHERE j.pair_id = p.id AND j.annotator_id = %s)
  AND EXISTS (SELECT 1 FROM annotation_lease r
              WHERE r.pair_id = p.id AND r.annotator_id = %s AND r.state = 'released') = %s
  AND p.id NOT IN ({full})
ORDER BY p.priority DESC, p.id ASC
LIMIT %s{lock}
"""

PAIR_FIELDS = (
    "id",
    "tuple_id",
    "image_correct_id",
    "image_wrong_id",
    "status",
    "k",
    "is_gold",
    "is_qualification",
    "judgement_count",
    "priority",
)
TUPLE_FIELDS = ("id", "implicit_prompt", "task_id")


def window(
    user_id: int,
    now: datetime,
    task_ids,
    full,
    *,
    skipped: bool,
    gold: bool,
    limit: int,
    skip_locked: bool,
    qualification: bool = False,
) -> list[Pair]:
    """The candidate pairs, each with its tuple. ``skip_locked``: lock them, skipping pairs other
    transactions hold; otherwise a plain read. ``full``: pair ids to leave out (found full under the lock).
    ``qualification`` (with ``gold``): the qualification sets' pairs instead of the other gold pairs."""
    clause = lock("FOR UPDATE OF p SKIP LOCKED") if skip_locked else ""
    full_ids = sorted(full) or [0]  # no pair has id 0
    if gold:
        sql, params = GOLD_WINDOW, [qualification, *task_ids, user_id, user_id, skipped, *full_ids, limit]
    else:
        sql, params = OPEN_WINDOW, [*task_ids, _db_time(now), user_id, user_id, skipped, *full_ids, limit]
    pairs = []
    n = len(PAIR_FIELDS)
    for row in _fetch(sql.format(ids=in_list(len(task_ids)), full=in_list(len(full_ids)), lock=clause), params):
        pair = from_db(Pair, PAIR_FIELDS, row[:n])
        pair.tuple = from_db(PromptTuple, TUPLE_FIELDS, row[n:])
        pairs.append(pair)
    return pairs


# --- The lease ----------------------------------------------------------------------------------

# A new lease, written only if the pair still has room: the count of its live leases is a new statement,
# so under READ COMMITTED it sees every lease committed before it, even those the window's snapshot
# missed (the capacity rule of annotation/services/queue.py). ``Lease.objects.create`` cannot make the
# INSERT conditional. Parameters: pair, annotator, left image, right image, created, expires, then the
# pair, now and the room (k − judgements; gold pairs: no limit). Returns the new id, or no row.
LEASE_IF_ROOM = """
INSERT INTO annotation_lease (pair_id, annotator_id, left_image_id, right_image_id, state, created_at, expires_at,
                              heartbeat_at, ended_at)
SELECT %s, %s, %s, %s, 'active', %s, %s, NULL, NULL
WHERE (SELECT COUNT(*) FROM annotation_lease l WHERE l.pair_id = %s AND l.state = 'active' AND l.expires_at > %s) < %s
RETURNING id
"""

NO_LIMIT = 2**31 - 1


def insert_lease(lease: Lease, *, now: datetime, room: int) -> Lease | None:
    """Write ``lease`` (new, unsaved) if fewer than ``room`` live leases hold its pair; None otherwise."""
    lease.created_at = now
    found = _fetch(
        LEASE_IF_ROOM,
        [
            lease.pair_id,
            lease.annotator_id,
            lease.left_image_id,
            lease.right_image_id,
            _db_time(now),
            _db_time(lease.expires_at),
            lease.pair_id,
            _db_time(now),
            room,
        ],
    )
    if not found:
        return None
    return from_db(
        Lease,
        LEASE_FIELDS,
        (
            found[0][0],
            lease.pair_id,
            lease.annotator_id,
            lease.left_image_id,
            lease.right_image_id,
            Lease.State.ACTIVE,
            lease.expires_at,
        ),
    )


# --- The judgement ------------------------------------------------------------------------------

# The pair and the lease, both locked, in one statement: every judgement and late heartbeat starts
# here. ``FOR UPDATE OF p, l`` takes the pair's lock first (PostgreSQL locks in the order the OF clause
# names), as every other path of the queue does. Parameters: lease, annotator.
PAIR_AND_LEASE = """
SELECT p.id, p.tuple_id, p.image_correct_id, p.image_wrong_id, p.status, p.k, p.is_gold, p.is_qualification,
       p.judgement_count, p.priority, l.id, l.pair_id, l.annotator_id, l.left_image_id, l.right_image_id, l.state,
       l.expires_at
FROM annotation_pair p
JOIN annotation_lease l ON l.pair_id = p.id
WHERE l.id = %s AND l.annotator_id = %s{lock}
"""

LEASE_FIELDS = ("id", "pair_id", "annotator_id", "left_image_id", "right_image_id", "state", "expires_at")


def lock_pair_and_lease(lease_id: int, user_id: int) -> tuple[Pair, Lease] | None:
    found = _fetch(PAIR_AND_LEASE.format(lock=lock("FOR UPDATE OF p, l")), [lease_id, user_id])
    if not found:
        return None
    n = len(PAIR_FIELDS)
    return from_db(Pair, PAIR_FIELDS, found[0][:n]), from_db(Lease, LEASE_FIELDS, found[0][n:])


# A judgement's four writes as one statement (data-modifying WITH queries): the judgement, the pair's
# count and status, the lease's end and the audit event naming the new judgement. All of it or none, in
# one round trip where the ORM needs four (and four statements' server work). PostgreSQL only; on SQLite
# ``write_judgement`` makes the same writes with the ORM. Parameters: the judgement's columns, then the
# pair's count, status and id, the lease's end and id, and the event's columns.
JUDGEMENT_WRITES = """
WITH j AS (
  INSERT INTO annotation_judgement (pair_id, annotator_id, lease_id, choice, chosen_image_id, flag_prompt_unclear,
                                    flag_image_broken, flag_off_topic, comment, time_spent_ms, confidence, reasons,
                                    created_at)
  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
), p AS (
  UPDATE annotation_pair SET judgement_count = %s, status = %s WHERE id = %s
), l AS (
  UPDATE annotation_lease SET state = 'judged', ended_at = %s WHERE id = %s
), e AS (
  INSERT INTO annotation_auditevent (actor_id, action, target_type, target_id, before, after, created_at)
  SELECT %s, 'judgement.created', 'judgement', CAST(j.id AS varchar), NULL, %s, %s FROM j RETURNING id
)
SELECT j.id FROM j CROSS JOIN e
"""


def write_judgement(judgement: Judgement, pair: Pair, lease: Lease, *, now: datetime, after: dict) -> Judgement:
    """Save ``judgement`` (new), the pair's ``judgement_count`` and ``status`` as set on ``pair``, the
    lease as judged at ``now``, and the ``judgement.created`` audit event with ``after``."""
    judgement.created_at = now
    lease.state, lease.ended_at = Lease.State.JUDGED, now
    if connection.vendor != "postgresql":
        judgement.save(force_insert=True)
        Pair.objects.filter(pk=pair.pk).update(judgement_count=pair.judgement_count, status=pair.status)
        Lease.objects.filter(pk=lease.pk).update(state=lease.state, ended_at=now)
        AuditEvent.objects.create(
            actor_id=judgement.annotator_id,
            action="judgement.created",
            target_type="judgement",
            target_id=str(judgement.pk),
            after=after,
        )
        return judgement
    after_json = AuditEvent._meta.get_field("after").get_db_prep_save(after, connection)
    reasons_json = Judgement._meta.get_field("reasons").get_db_prep_save(judgement.reasons, connection)
    found = _fetch(
        JUDGEMENT_WRITES,
        [
            judgement.pair_id,
            judgement.annotator_id,
            judgement.lease_id,
            judgement.choice,
            judgement.chosen_image_id,
            judgement.flag_prompt_unclear,
            judgement.flag_image_broken,
            judgement.flag_off_topic,
            judgement.comment,
            judgement.time_spent_ms,
            judgement.confidence,
            reasons_json,
            _db_time(now),
            pair.judgement_count,
            pair.status,
            pair.pk,
            _db_time(now),
            lease.pk,
            judgement.annotator_id,
            after_json,
            _db_time(now),
        ],
    )
    saved = from_db(
        Judgement, JUDGEMENT_FIELDS, (found[0][0], *(getattr(judgement, name) for name in JUDGEMENT_FIELDS[1:]))
    )
    saved.reasons = judgement.reasons  # already Python: the JSON field's converter reads only database text
    return saved


JUDGEMENT_FIELDS = (
    "id",
    "pair_id",
    "annotator_id",
    "lease_id",
    "choice",
    "chosen_image_id",
    "flag_prompt_unclear",
    "flag_image_broken",
    "flag_off_topic",
    "comment",
    "time_spent_ms",
    "confidence",
    "created_at",
)


# --- The token check ----------------------------------------------------------------------------

# The user of an API token with their roles, in one statement instead of DRF's two ORM queries plus one
# for the roles (annotation/authentication.py). Parameters: annotator, reviewer, admin (role names),
# then the key.
TOKEN_USER = """
SELECT u.id, u.password, u.last_login, u.is_superuser, u.username, u.first_name, u.last_name, u.email,
       u.is_staff, u.is_active, u.date_joined, t.created,
       EXISTS (SELECT 1 FROM auth_user_groups m JOIN auth_group g ON g.id = m.group_id
               WHERE m.user_id = u.id AND g.name = %s),
       EXISTS (SELECT 1 FROM auth_user_groups m JOIN auth_group g ON g.id = m.group_id
               WHERE m.user_id = u.id AND g.name = %s),
       EXISTS (SELECT 1 FROM auth_user_groups m JOIN auth_group g ON g.id = m.group_id
               WHERE m.user_id = u.id AND g.name = %s)
FROM authtoken_token t
JOIN auth_user u ON u.id = t.user_id
WHERE t.key = %s
"""

USER_FIELDS = (
    "id",
    "password",
    "last_login",
    "is_superuser",
    "username",
    "first_name",
    "last_name",
    "email",
    "is_staff",
    "is_active",
    "date_joined",
)


def token_user(key: str, role_names: tuple[str, str, str]) -> tuple[Token, tuple[bool, ...]] | None:
    """The token of ``key`` with its user loaded, and whether the user holds each of ``role_names``; or None."""
    found = _fetch(TOKEN_USER, [*role_names, key])
    if not found:
        return None
    row = found[0]
    user = from_db(get_user_model(), USER_FIELDS, row[:11])
    token = from_db(Token, ("key", "user_id", "created"), (key, user.pk, row[11]))
    token.user = user
    return token, tuple(bool(flag) for flag in row[12:])

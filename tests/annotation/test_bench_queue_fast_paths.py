"""What the queue's performance work (bench/queue_load.py, docs/benchmarks/queue.md) must keep.

* The candidate window and the annotator's state are SQL written once per shape in
  ``annotation/services/queue.py``: they must select exactly what the ORM queries they replaced
  selected (compared here on data where they could differ).
* ``next`` and ``judgement`` run a fixed number of statements, whatever the number of pairs.
* The one-statement token path of the queue endpoints answers exactly as DRF's token
  authentication and IsAnnotator do.
* The single-row INSERT/UPDATE of ``annotation/services/rows.py`` writes the row ``save()`` writes.
* A ``next`` that would have to wait for a pair lock while holding a window of full pairs starts
  its transaction again instead (no deadlock), and still leases a pair.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Judgement, Lease, Pair, Task
from annotation.services import catalog, queue
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


# --- the SQL selects what the ORM selected ------------------------------------------------------


def _orm_allowed_tasks(user, task=None, discipline=None):
    """The ORM query allowed_tasks was before."""
    qs = Task.objects.filter(Q(experts__user=user) | Q(discipline__experts__user=user))
    if task:
        qs = qs.filter(code__iexact=task)
    if discipline:
        qs = qs.filter(discipline__slug__iexact=discipline)
    return set(qs.values_list("id", flat=True))


@pytest.mark.parametrize("task,discipline", [(None, None), ("ru", None), ("GR", None), (None, "PHYSICS"),
                                             ("gr", "physics"), ("gr", "chemistry"), ("XX", None)])
def test_the_annotator_state_has_the_allowed_tasks_of_the_orm_query(task, discipline):
    users = [
        make_user("by-discipline", disciplines=["physics", "chemistry"]),
        make_user("by-task", tasks=["GR", "RI"]),
        make_user("both", disciplines=["chemistry"], tasks=["GR", "RU"]),
        make_user("nothing"),
        make_user("reviewer-only", role="reviewer"),
    ]
    for user in users:
        state = queue._annotator_state(user, task=task, discipline=discipline)
        assert set(state.tasks) == _orm_allowed_tasks(user, task, discipline), user.username
        assert set(queue.allowed_tasks(user, task=task, discipline=discipline).values_list("id", flat=True)) \
            == _orm_allowed_tasks(user, task, discipline)
        for found in map(state.task, state.tasks):
            stored = Task.objects.select_related("discipline").get(pk=found.pk)
            assert (found.code, found.name, found.kind, found.discipline.slug, found.discipline.name) == (
                stored.code, stored.name, stored.kind, stored.discipline.slug, stored.discipline.name)
        assert state.paused is False and state.has_active_lease is False


def test_the_annotator_state_sees_the_pause_and_the_active_lease():
    user = make_user("state", disciplines=["chemistry"])
    make_pair("RU")
    queue.next_lease(user)
    assert queue._annotator_state(user, task=None, discipline=None).has_active_lease is True
    assert queue._annotator_state(user, task="GR", discipline=None).has_active_lease is True  # no task left
    user.expertise.paused = True
    user.expertise.save()
    assert queue._annotator_state(user, task=None, discipline=None).paused is True
    assert queue._annotator_state(user, task="GR", discipline=None).paused is True


def _orm_candidates(user, now, task_ids, *, skipped, gold):
    """The ORM candidate query the SQL window replaced (same rules, same order)."""
    mine_released = Lease.objects.filter(annotator=user, state=Lease.State.RELEASED).values("pair_id")
    qs = Pair.objects.filter(is_gold=gold, tuple__task_id__in=task_ids).exclude(
        id__in=Judgement.objects.filter(annotator=user).values("pair_id"))
    if gold:
        qs = qs.exclude(status=Pair.Status.RETIRED)
    else:
        live = (Lease.objects.filter(pair=OuterRef("pk"), state=Lease.State.ACTIVE, expires_at__gt=now)
                .order_by().values("pair").annotate(n=Count("id")).values("n"))
        qs = (qs.filter(status=Pair.Status.OPEN, judgement_count__lt=F("k"))
              .annotate(live=Coalesce(Subquery(live, output_field=IntegerField()), 0))
              .filter(judgement_count__lt=F("k") - F("live")))
    qs = qs.filter(id__in=mine_released) if skipped else qs.exclude(id__in=mine_released)
    return list(qs.order_by("-priority", "id").values_list("id", flat=True))


@pytest.mark.parametrize("seed", range(4))
def test_the_sql_window_selects_what_the_orm_query_selected(seed):
    rng = random.Random(seed)
    me = make_user("me", disciplines=["chemistry"], tasks=["GR"])
    others = [make_user(f"other{i}", disciplines=["chemistry", "physics"]) for i in range(4)]
    now = timezone.now()
    pairs = [make_pair(rng.choice(["RU", "IM", "GR", "BU", "RI"]), k=rng.choice([1, 2, 3])) for _ in range(36)]
    for pair in pairs:
        pair.priority = rng.choice([0.0, 0.0, 0.5, 1.0])
        pair.save(update_fields=["priority"])
        if rng.random() < 0.1:
            Pair.objects.filter(pk=pair.pk).update(is_gold=True)
        roll = rng.random()
        if roll < 0.08:
            catalog.set_pair_retired(pair.id, True)
        people = rng.sample([me, *others], rng.randint(0, 3))
        for who in people:
            kind = rng.choice(["judged", "live", "expired", "released"])
            state = {"judged": "judged", "live": "active", "expired": "active", "released": "released"}[kind]
            if state == "active" and Lease.objects.filter(annotator=who, state="active").exists():
                continue
            lease = Lease.objects.create(
                pair=pair, annotator=who, left_image_id=pair.image_correct_id, right_image_id=pair.image_wrong_id,
                state=state, expires_at=now + (timedelta(minutes=-5) if kind == "expired" else timedelta(minutes=5)))
            if kind == "judged":
                pair.refresh_from_db()
                if pair.judgement_count >= pair.k and not pair.is_gold:
                    lease.delete()
                    continue
                Judgement.objects.create(pair=pair, annotator=who, lease=lease, choice="both")
                Pair.objects.filter(pk=pair.pk).update(judgement_count=F("judgement_count") + 1)
        pair.refresh_from_db()
        if pair.status == Pair.Status.OPEN and not pair.is_gold and pair.judgement_count >= pair.k:
            Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.COMPLETE)
    task_ids = sorted(queue._annotator_state(me, task=None, discipline=None).tasks)
    for skipped in (False, True):
        for gold in (False, True):
            expected = _orm_candidates(me, now, task_ids, skipped=skipped, gold=gold)
            with transaction.atomic():
                got = [queue._as_pair(row) for row in queue._select_window(
                    me, now, task_ids, set(), skipped=skipped, gold=gold, limit=1000, skip_locked=True)]
            assert [p.id for p in got] == expected, (skipped, gold)
            for found in got:
                stored = Pair.objects.select_related("tuple").get(pk=found.pk)
                assert (found.judgement_count, found.k, found.is_gold, found.status, found.image_correct_id,
                        found.image_wrong_id, found.tuple.implicit_prompt, found.tuple.task_id) == (
                    stored.judgement_count, stored.k, stored.is_gold, stored.status, stored.image_correct_id,
                    stored.image_wrong_id, stored.tuple.implicit_prompt, stored.tuple.task_id)
            if expected[1:]:
                full = set(expected[:1])
                with transaction.atomic():
                    rest = queue._select_window(me, now, task_ids, full, skipped=skipped, gold=gold, limit=1000,
                                                skip_locked=True)
                assert [row[0] for row in rest] == expected[1:]


# --- a fixed number of statements -----------------------------------------------------------------


def _statements(client, method, path, **kwargs):
    with CaptureQueriesContext(connection) as ctx:
        response = getattr(client, method)(path, **kwargs)
    return response, len(ctx.captured_queries)


def test_next_and_judgement_run_the_same_number_of_statements_whatever_the_number_of_pairs(settings):
    settings.GOLD_RATE = 0.0  # a gold probe first would add one statement at random
    counts = []
    for n_pairs, name in ((2, "few"), (40, "many")):
        user = make_user(name, disciplines=["chemistry"])
        for _ in range(n_pairs):
            make_pair("RU")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        leased, next_statements = _statements(client, "post", "/api/queue/next/")
        assert leased.status_code == 200
        judged, judge_statements = _statements(
            client, "post", f"/api/leases/{leased.json()['lease_id']}/judgement/", data={"choice": "left"},
            format="json")
        assert judged.status_code == 201
        counts.append((next_statements, judge_statements))
    assert counts[0] == counts[1]
    # next: token + role, state, window, lease insert re-checking room; judgement: token + role, pair and
    # lease, the four writes, consensus read and write (+ the test transaction's savepoints, 2 each)
    savepoints = 2
    assert counts[0] == (4 + savepoints, (5 if connection.vendor == "postgresql" else 8) + savepoints)


# --- the one-statement token path answers as DRF does -----------------------------------------------


@pytest.fixture
def token_client():
    def make(header):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        return client
    return make


def test_the_token_path_serves_annotators_and_refuses_like_drf(token_client):
    make_pair("RU")
    annotator = make_user("tok-ann", disciplines=["chemistry"])
    reviewer = make_user("tok-rev", role="reviewer")
    inactive = make_user("tok-off", disciplines=["chemistry"])
    inactive.is_active = False
    inactive.save()
    key = {u.username: Token.objects.create(user=u).key for u in (annotator, reviewer, inactive)}

    ok = token_client(f"Token {key['tok-ann']}").post("/api/queue/next/")
    assert ok.status_code == 200 and Lease.objects.get(annotator=annotator).id == ok.json()["lease_id"]
    lower = token_client(f"token {key['tok-ann']}").post("/api/queue/next/")  # DRF's keyword is case-blind
    assert lower.status_code == 200 and lower.json()["lease_id"] == ok.json()["lease_id"]

    refused = token_client(f"Token {key['tok-rev']}").post("/api/queue/next/")
    assert refused.status_code == 403 and refused.json()["detail"] == "Only annotators use the queue."

    cases = [
        (f"Token {key['tok-off']}", "User inactive or deleted."),
        ("Token 0123456789abcdef0123456789abcdef01234567", "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        (f"Token {key['tok-ann']} extra", "Invalid token header. Token string should not contain spaces."),
    ]
    for header, detail in cases:
        response = token_client(header).post("/api/queue/next/")
        assert response.status_code == 401 and response.json()["detail"] == detail, header
        assert response["WWW-Authenticate"] == "Token"
    assert APIClient().post("/api/queue/next/").status_code == 401


def test_session_and_forced_authentication_still_work_on_the_queue(api):
    pair = make_pair("RU")
    annotator = make_user("sess-ann", disciplines=["chemistry"])
    browser = APIClient(enforce_csrf_checks=False)
    browser.force_login(annotator)
    body = browser.post("/api/queue/next/").json()
    assert body["pair_id"] == pair.id
    reviewer = make_user("sess-rev", role="reviewer")
    api.force_authenticate(reviewer)
    assert api.post("/api/queue/next/").status_code == 403


def test_every_queue_endpoint_takes_a_token():
    make_pair("RU")
    make_pair("RU")
    annotator = make_user("all-ann", disciplines=["chemistry"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    lease = client.post("/api/queue/next/").json()["lease_id"]
    assert client.post(f"/api/leases/{lease}/heartbeat/").status_code == 200
    assert client.post(f"/api/leases/{lease}/release/").status_code == 200
    lease = client.post("/api/queue/next/").json()["lease_id"]
    assert client.post(f"/api/leases/{lease}/judgement/", {"choice": "right"}, format="json").status_code == 201
    assert client.post("/api/judgements/undo/").status_code == 200


# --- a full window never waits for a lock ---------------------------------------------------------


def test_a_next_holding_only_full_pairs_starts_again_instead_of_waiting(settings, monkeypatch):
    settings.GOLD_RATE = 0.0
    settings.QUEUE_LOCK_WINDOW = 5
    pairs = [make_pair("RU", k=1) for _ in range(5)]
    user = make_user("restarts", disciplines=["chemistry"])
    real_create, calls = queue._create_lease, []

    def stale_once(user, pair, now, **kwargs):
        # Every pair of the first window turns out full at the lease's insert, as if each had been
        # leased after the window's snapshot; the next window (every other candidate) is empty, so a
        # lock would have to be waited for while holding the full window: the transaction must
        # start again.
        calls.append(pair.id)
        if len(calls) <= len(pairs):
            return None
        return real_create(user, pair, now, **kwargs)

    monkeypatch.setattr(queue, "_create_lease", stale_once)
    restarts = []
    real_lock = queue._lock_window

    def counting_lock(*args, **kwargs):
        try:
            return real_lock(*args, **kwargs)
        except queue._Restart:
            restarts.append(1)
            raise

    monkeypatch.setattr(queue, "_lock_window", counting_lock)
    lease = queue.next_lease(user)
    assert lease is not None and lease.pair_id in {p.id for p in pairs}
    assert restarts == [1] and len(calls) == len(pairs) + 1
    assert Lease.objects.filter(annotator=user).count() == 1


# --- the answers built directly equal the serializers' ----------------------------------------------


def test_the_queue_answers_equal_what_their_serializers_give(rf):
    from annotation.api_queue import JudgementReceiptSerializer, LeaseSerializer, _lease_payload, _receipt

    make_pair("RU")
    make_pair("RU")
    user = make_user("payload", disciplines=["chemistry"])
    request = rf.post("/api/queue/next/")
    leases = [queue.next_lease(user)]  # a new lease, its task and discipline from the annotator's state
    leases.append(queue.next_lease(user))  # the live lease, read back with select_related
    leases.append(queue.heartbeat(user, leases[0].id))
    judgement, _ = queue.submit_judgement(user, leases[0].id, queue.JudgementInput("left"))
    receipts = [judgement, Judgement.objects.get(pk=judgement.pk)]
    leases.append(queue.undo_last_judgement(user))
    for lease in leases:
        assert _lease_payload(lease, request) == LeaseSerializer(lease, context={"request": request}).data
    for found in receipts:
        assert _receipt(found) == JudgementReceiptSerializer(found).data


# --- single-row SQL (annotation/services/rows.py) writes what save() writes ------------------------


def _stored(model, pk) -> dict:
    row = model.objects.filter(pk=pk).values().get()
    return {name: value for name, value in row.items() if name not in ("id", "created_at", "updated_at")}


def test_a_row_inserted_by_the_hot_path_equals_the_row_save_writes():
    from annotation.models import AuditEvent
    from annotation.services import rows
    from curation.models import Consensus

    user = make_user("writer", disciplines=["chemistry"])
    pair, other = make_pair("RU"), make_pair("RU")
    now = timezone.now()
    lease_fields = dict(annotator=user, left_image_id=pair.image_wrong_id, right_image_id=pair.image_correct_id,
                        state=Lease.State.JUDGED, expires_at=now)
    fast_lease = rows.insert(Lease(pair=pair, **lease_fields))
    orm_lease = Lease.objects.create(pair=other, **lease_fields)
    assert fast_lease.pk is not None and not fast_lease._state.adding
    assert {**_stored(Lease, fast_lease.pk), "pair_id": other.pk} == _stored(Lease, orm_lease.pk)
    assert abs(Lease.objects.get(pk=fast_lease.pk).created_at - now) < timedelta(seconds=5)

    judgement_fields = dict(annotator=user, choice="right", chosen_image_id=pair.image_correct_id,
                            flag_off_topic=True, comment="ünïcode ☃", time_spent_ms=1234)
    fast = rows.insert(Judgement(pair=pair, lease=fast_lease, **judgement_fields))
    orm = Judgement.objects.create(pair=other, lease=orm_lease, **judgement_fields)
    assert {**_stored(Judgement, fast.pk), "pair_id": other.pk, "lease_id": orm_lease.pk} \
        == _stored(Judgement, orm.pk)

    event_fields = dict(actor=user, action="bench.check", target_type="pair", target_id="7",
                        before=None, after={"nested": [1, "two", {"three": None}]})
    fast_event, orm_event = rows.insert(AuditEvent(**event_fields)), AuditEvent.objects.create(**event_fields)
    assert _stored(AuditEvent, fast_event.pk) == _stored(AuditEvent, orm_event.pk)

    consensus_fields = dict(outcome="confirmed", label="expected", agreement=2 / 3, n_judgements=3,
                            counts={"expected": 2, "other": 1, "both": 0, "neither": 0})
    fast_c = rows.insert(Consensus(pair=pair, **consensus_fields))
    orm_c = Consensus.objects.create(pair=other, **consensus_fields)
    assert {**_stored(Consensus, fast_c.pk), "pair_id": other.pk} == _stored(Consensus, orm_c.pk)
    rows.update(fast_c, outcome="disputed", label="", counts={"expected": 1})
    assert Consensus.objects.values_list("outcome", "label", "counts").get(pk=fast_c.pk) == (
        "disputed", "", {"expected": 1})



def _judgement_writes(user, pair, lease, now, choice):
    """A judgement with the writes the queue makes with it (rows.insert_with's arguments)."""
    from annotation.services import audit

    judgement = Judgement(pair=pair, annotator=user, lease=lease, choice=choice, chosen_image_id=pair.image_correct_id,
                          flag_off_topic=True, comment="ünïcode ☃", time_spent_ms=1234)
    return judgement, dict(
        updates=[(pair, {"judgement_count": 1, "status": Pair.Status.OPEN}),
                 (lease, {"state": Lease.State.JUDGED, "ended_at": now})],
        then=audit.event(user, "judgement.created", judgement, after={"choice": choice, "nested": [1, None]}),
        link="target_id")


def test_writes_sent_together_equal_the_same_writes_sent_one_by_one():
    from annotation.models import AuditEvent
    from annotation.services import rows

    user = make_user("together", disciplines=["chemistry"])
    now = timezone.now()
    written = []
    for together in (True, False):
        pair = make_pair("RU")
        lease = Lease.objects.create(pair=pair, annotator=make_user(f"t{together}", disciplines=["chemistry"]),
                                     left_image_id=pair.image_correct_id, right_image_id=pair.image_wrong_id,
                                     expires_at=now)
        judgement, writes = _judgement_writes(user, pair, lease, now, "left")
        with CaptureQueriesContext(connection) as ctx:
            if together:
                rows.insert_with(judgement, **writes)
            else:
                rows.insert(judgement)
                for obj, values in writes["updates"]:
                    rows.update(obj, **values)
                writes["then"].target_id = str(judgement.pk)
                rows.insert(writes["then"])
        if together and connection.vendor == "postgresql":
            assert len(ctx.captured_queries) == 1
        event = writes["then"]
        assert judgement.pk and not judgement._state.adding and event.pk and event.target_id == str(judgement.pk)
        assert Lease.objects.values_list("state", "ended_at").get(pk=lease.pk) == ("judged", now)
        assert Pair.objects.values_list("judgement_count", "status").get(pk=pair.pk) == (1, "open")
        assert Judgement.objects.get(pk=judgement.pk).created_at == judgement.created_at  # as save() leaves it
        written.append((_stored(Judgement, judgement.pk), _stored(AuditEvent, event.pk)))
    (fast_j, fast_e), (slow_j, slow_e) = written
    per_pair = ("pair_id", "lease_id", "chosen_image_id")
    assert {k: v for k, v in fast_j.items() if k not in per_pair} == {k: v for k, v in slow_j.items() if k not in per_pair}
    assert {**fast_e, "target_id": ""} == {**slow_e, "target_id": ""}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_writes_sent_together_are_one_statement_that_writes_nothing_when_one_part_fails():
    """Outside any transaction (autocommit), so only the statement's own atomicity can keep the
    first writes from staying when the last one fails; on other databases they are separate
    statements and the caller's transaction does that (the queue always calls it in one)."""
    from annotation.models import AuditEvent
    from annotation.services import rows

    if connection.vendor != "postgresql":
        pytest.skip("one statement only on PostgreSQL")
    user = make_user("failing", disciplines=["chemistry"])
    pair, now = make_pair("RU"), timezone.now()
    lease = Lease.objects.create(pair=pair, annotator=user, left_image_id=pair.image_correct_id,
                                 right_image_id=pair.image_wrong_id, expires_at=now)
    judgement, writes = _judgement_writes(user, pair, lease, now, "left")
    writes["then"].action = None  # NOT NULL: the last write fails
    assert connection.get_autocommit()
    with pytest.raises(IntegrityError):
        rows.insert_with(judgement, **writes)
    assert not Judgement.objects.exists() and not AuditEvent.objects.filter(action="judgement.created").exists()
    assert Pair.objects.values_list("judgement_count", flat=True).get(pk=pair.pk) == 0
    assert Lease.objects.values_list("state", flat=True).get(pk=lease.pk) == "active"


_BODIES = [
    {"choice": "left"}, {"choice": "neither", "time_spent_ms": 0}, {"choice": "both", "time_spent_ms": None},
    {"choice": "right", "flag_off_topic": True, "flag_image_broken": False, "time_spent_ms": 86_400_000},
    {"choice": "right", "flag_prompt_unclear": True},
    # bodies the direct reading leaves to the serializer (conversions, trimming, refusals):
    {"choice": "left", "flag_off_topic": "true"}, {"choice": "left", "time_spent_ms": "12"},
    {"choice": "left", "comment": "  spaced  "}, {"choice": "left", "comment": "nul\x00"},
    {"choice": "LEFT"}, {"choice": "left", "time_spent_ms": -1}, {"choice": "left", "time_spent_ms": 86_400_001},
    {"choice": "left", "time_spent_ms": True}, {"choice": "left", "time_spent_ms": 1.5}, {"choice": "left", "x": 1},
    {"choice": "left", "flag_off_topic": None}, {}, [], "left", {"choice": ["left"]},
]


@pytest.mark.parametrize("body", _BODIES, ids=repr)
def test_the_judgement_body_is_read_as_its_serializer_reads_it(body, monkeypatch):
    from rest_framework.exceptions import ValidationError

    from annotation import api_queue

    serializer = api_queue.JudgementInputSerializer(data=body)
    expected = (queue.JudgementInput(**serializer.validated_data) if serializer.is_valid()
                else ("400", serializer.errors))
    used = []
    real = api_queue.JudgementInputSerializer
    monkeypatch.setattr(api_queue, "JudgementInputSerializer", lambda **kw: used.append(1) or real(**kw))
    try:
        got = api_queue._judgement_input(body)
    except ValidationError as exc:
        got = ("400", exc.detail)
    assert got == expected
    plain = body in _BODIES[:5]
    assert used == ([] if plain else [1])  # the usual bodies never build a serializer


def test_the_queue_statements_are_prepared_by_postgresql_and_the_orm_ones_are_not():
    from annotation.services import rows

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature")
    assert connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None
    user = make_user("prepared", disciplines=["chemistry"])
    for _ in range(8):
        make_pair("RU")
    for _ in range(7):
        lease = queue.next_lease(user)
        queue.submit_judgement(user, lease.id, queue.JudgementInput(choice="both"))
        Pair.objects.filter(pk=lease.pair_id).exists()  # an ORM statement, as often
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('INSERT INTO "annotation_judgement"' in sql for sql in prepared), prepared
    assert any('FROM "annotation_lease" l' in sql for sql in prepared), prepared
    assert not any('SELECT 1 AS "a" FROM "annotation_pair"' in sql for sql in prepared)  # the ORM's exists()
    with rows.cursor() as cursor:  # a prepared cursor reads timestamps in the connection's zone
        cursor.execute("SELECT now()")
        assert cursor.fetchone()[0].utcoffset() == timezone.now().utcoffset()


def test_the_lease_insert_writes_nothing_when_the_pair_has_no_room_left():
    pair = make_pair("RU", k=2)
    first, second, third, gone = (make_user(f"room{i}", disciplines=["chemistry"]) for i in range(4))
    now = timezone.now()
    with transaction.atomic():
        assert queue._create_lease(first, Pair.objects.get(pk=pair.pk), now, savepoint=False, if_room=True)
    Lease.objects.create(pair=pair, annotator=gone, left_image_id=pair.image_correct_id,
                         right_image_id=pair.image_wrong_id, state="active", expires_at=now - timedelta(seconds=1))
    with transaction.atomic():  # an expired lease takes no room
        assert queue._create_lease(second, Pair.objects.get(pk=pair.pk), now, savepoint=False, if_room=True)
    with transaction.atomic():
        assert queue._create_lease(third, Pair.objects.get(pk=pair.pk), now, savepoint=False, if_room=True) is None
    assert Lease.objects.filter(pair=pair, state="active", expires_at__gt=now).count() == 2

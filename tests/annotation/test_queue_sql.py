"""The queue's literal SQL (annotation/services/queue_sql.py) selects and writes what the ORM would.

* The annotator's state and the candidate window select exactly what the ORM queries they replace
  select (compared here on data where they could differ); every table they name is a model's.
* ``next`` and ``judgement`` run a fixed number of statements, whatever the number of pairs.
* The token authentication (one statement) answers exactly as DRF's token authentication and
  IsAnnotator do.
* The judgement's writes (one statement on PostgreSQL) write what the ORM writes, and nothing when
  one part fails; the lease insert writes nothing when the pair has no room.
* A ``next`` that would have to wait for a pair lock while holding a window of full pairs starts
  its transaction again instead (no deadlock), and still leases a pair.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import AuditEvent, Expertise, Judgement, Lease, Pair, Task
from annotation.services import catalog, queue, queue_sql
from curation.services import consensus, judging
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def test_every_table_the_statements_name_is_a_models_table():
    tables = {model._meta.db_table for model in apps.get_models(include_auto_created=True)}
    statements = [value for name, value in vars(queue_sql).items() if name.isupper() and isinstance(value, str)]
    statements.append(consensus.READ)
    assert len(statements) >= 9
    for sql in statements:
        named = set(re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", sql))
        named -= {"j", "p", "l", "e"}  # the judgement statement's WITH queries
        assert named and named <= tables, (named - tables, sql)


def _orm_allowed_tasks(user, task=None, discipline=None):
    """The ORM query allowed_tasks was before."""
    qs = Task.objects.filter(Q(experts__user=user) | Q(discipline__experts__user=user))
    if task:
        qs = qs.filter(code__iexact=task)
    if discipline:
        qs = qs.filter(discipline__slug__iexact=discipline)
    return set(qs.values_list("id", flat=True))


@pytest.mark.parametrize(
    "task,discipline",
    [(None, None), ("ru", None), ("GR", None), (None, "PHYSICS"), ("gr", "physics"), ("gr", "chemistry"), ("XX", None)],
)
def test_the_annotator_state_has_the_allowed_tasks_of_the_orm_query(task, discipline):
    users = [
        make_user("by-discipline", disciplines=["physics", "chemistry"]),
        make_user("by-task", tasks=["GR", "RI"]),
        make_user("both", disciplines=["chemistry"], tasks=["GR", "RU"]),
        make_user("nothing"),
        make_user("reviewer-only", role="reviewer"),
    ]
    for user in users:
        paused, leased, tasks = queue_sql.annotator_state(user.pk, task=task, discipline=discipline)
        assert set(tasks) == _orm_allowed_tasks(user, task, discipline), user.username
        assert set(queue.allowed_tasks(user, task=task, discipline=discipline)) == _orm_allowed_tasks(
            user, task, discipline
        )
        for found in tasks.values():
            stored = Task.objects.select_related("discipline").get(pk=found.pk)
            assert (found.code, found.name, found.kind, found.discipline.slug, found.discipline.name) == (
                stored.code,
                stored.name,
                stored.kind,
                stored.discipline.slug,
                stored.discipline.name,
            )
        assert paused is False and leased is False


def test_the_annotator_state_sees_the_pause_and_the_active_lease():
    user = make_user("state", disciplines=["chemistry"])
    make_pair("RU")
    queue.next_lease(user)
    assert queue_sql.annotator_state(user.pk, task=None, discipline=None)[1] is True
    assert queue_sql.annotator_state(user.pk, task="GR", discipline=None)[1] is True  # no task left
    Expertise.objects.filter(user=user).update(paused=True)
    assert queue_sql.annotator_state(user.pk, task=None, discipline=None)[0] is True
    assert queue_sql.annotator_state(user.pk, task="GR", discipline=None)[0] is True


def _orm_candidates(user, now, task_ids, *, skipped, gold):
    """The ORM candidate query the SQL window replaced (same rules, same order)."""
    mine_released = Lease.objects.filter(annotator=user, state=Lease.State.RELEASED).values("pair_id")
    qs = Pair.objects.filter(is_gold=gold, tuple__task_id__in=task_ids).exclude(
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
                pair=pair,
                annotator=who,
                left_image_id=pair.image_correct_id,
                right_image_id=pair.image_wrong_id,
                state=state,
                expires_at=now + (timedelta(minutes=-5) if kind == "expired" else timedelta(minutes=5)),
            )
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
    task_ids = queue.allowed_tasks(me)
    for skipped in (False, True):
        for gold in (False, True):
            expected = _orm_candidates(me, now, task_ids, skipped=skipped, gold=gold)
            with transaction.atomic():
                got = queue_sql.window(
                    me.pk, now, task_ids, set(), skipped=skipped, gold=gold, limit=1000, skip_locked=True
                )
            assert [p.id for p in got] == expected, (skipped, gold)
            for found in got:
                stored = Pair.objects.select_related("tuple").get(pk=found.pk)
                assert (
                    found.judgement_count,
                    found.k,
                    found.is_gold,
                    found.status,
                    found.image_correct_id,
                    found.image_wrong_id,
                    found.tuple.implicit_prompt,
                    found.tuple.task_id,
                ) == (
                    stored.judgement_count,
                    stored.k,
                    stored.is_gold,
                    stored.status,
                    stored.image_correct_id,
                    stored.image_wrong_id,
                    stored.tuple.implicit_prompt,
                    stored.tuple.task_id,
                )
            if expected[1:]:
                full = set(expected[:1])
                with transaction.atomic():
                    rest = queue_sql.window(
                        me.pk, now, task_ids, full, skipped=skipped, gold=gold, limit=1000, skip_locked=True
                    )
                assert [p.pk for p in rest] == expected[1:]


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
            client,
            "post",
            f"/api/leases/{leased.json()['lease_id']}/judgement/",
            data={"choice": "left"},
            format="json",
        )
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
    real_insert, inserts = queue_sql.insert_lease, []

    def stale_once(lease, **kwargs):
        # Every pair of the first window turns out full at the lease's insert, as if each had been
        # leased after the window's snapshot; the next window (every other candidate) is empty, so a
        # lock would have to be waited for while holding the full window: the transaction must
        # start again.
        inserts.append(lease.pair_id)
        if len(inserts) <= len(pairs):
            return None
        return real_insert(lease, **kwargs)

    real_window, windows = queue_sql.window, []

    def counting_window(*args, **kwargs):
        found = real_window(*args, **kwargs)
        windows.append((kwargs["skip_locked"], len(found), in_transaction_ids()))
        return found

    def in_transaction_ids():
        return connection.in_atomic_block

    monkeypatch.setattr(queue_sql, "insert_lease", stale_once)
    monkeypatch.setattr(queue_sql, "window", counting_window)
    lease = queue.next_lease(user)
    assert lease is not None and lease.pair_id in {p.id for p in pairs}
    # the window of 5 full pairs, the next (empty) window, then — after the restart — the window again
    assert [(skip, n) for skip, n, _ in windows] == [(True, 5), (True, 0), (True, 5)]
    assert len(inserts) == len(pairs) + 1
    assert Lease.objects.filter(annotator=user).count() == 1


def test_the_lease_insert_writes_nothing_when_the_pair_has_no_room_left():
    pair = make_pair("RU", k=2)
    first, second, third, gone = (make_user(f"room{i}", disciplines=["chemistry"]) for i in range(4))
    now = timezone.now()

    def lease_for(user):
        return Lease(
            pair=pair,
            annotator=user,
            left_image_id=pair.image_correct_id,
            right_image_id=pair.image_wrong_id,
            expires_at=now + timedelta(minutes=5),
        )

    assert queue_sql.insert_lease(lease_for(first), now=now, room=2).pk
    Lease.objects.create(
        pair=pair,
        annotator=gone,
        left_image_id=pair.image_correct_id,
        right_image_id=pair.image_wrong_id,
        state="active",
        expires_at=now - timedelta(seconds=1),
    )
    assert queue_sql.insert_lease(lease_for(second), now=now, room=2).pk  # an expired lease takes no room
    assert queue_sql.insert_lease(lease_for(third), now=now, room=2) is None
    assert Lease.objects.filter(pair=pair, state="active", expires_at__gt=now).count() == 2
    stored = Lease.objects.filter(annotator=second).values().get()
    assert (stored["state"], stored["left_image_id"], stored["heartbeat_at"], stored["ended_at"]) == (
        "active",
        pair.image_correct_id,
        None,
        None,
    )
    assert stored["created_at"] == now


# --- the judgement's writes ------------------------------------------------------------------------


def _stored(model, pk) -> dict:
    row = model.objects.filter(pk=pk).values().get()
    return {name: value for name, value in row.items() if name not in ("id", "created_at", "updated_at")}


def test_the_judgement_writes_equal_what_the_orm_writes():
    user = make_user("together", disciplines=["chemistry"])
    now = timezone.now()
    written = []
    for sql in (True, False):
        pair = make_pair("RU")
        lease = Lease.objects.create(
            pair=pair,
            annotator=user,
            left_image_id=pair.image_correct_id,
            right_image_id=pair.image_wrong_id,
            expires_at=now,
        )
        fields = {
            "pair": pair,
            "annotator": user,
            "lease": lease,
            "choice": "left",
            "chosen_image_id": pair.image_correct_id,
            "flag_off_topic": True,
            "comment": "ünïcode ☃",
            "time_spent_ms": 1234,
        }
        after = {"choice": "left", "nested": [1, None]}
        pair.judgement_count, pair.status = 1, Pair.Status.COMPLETE
        if sql:
            with CaptureQueriesContext(connection) as ctx:
                judgement = queue_sql.write_judgement(Judgement(**fields), pair, lease, now=now, after=after)
            assert len(ctx.captured_queries) == (1 if connection.vendor == "postgresql" else 4)
            assert Judgement.objects.get(pk=judgement.pk).created_at == judgement.created_at == now
            event = AuditEvent.objects.get(action="judgement.created", target_id=str(judgement.pk))
        else:
            judgement = Judgement.objects.create(**fields)
            Pair.objects.filter(pk=pair.pk).update(judgement_count=1, status=Pair.Status.COMPLETE)
            Lease.objects.filter(pk=lease.pk).update(state="judged", ended_at=now)
            event = AuditEvent.objects.create(
                actor=user,
                action="judgement.created",
                target_type="judgement",
                target_id=str(judgement.pk),
                after=after,
            )
        assert Lease.objects.values_list("state", "ended_at").get(pk=lease.pk) == ("judged", now)
        assert Pair.objects.values_list("judgement_count", "status").get(pk=pair.pk) == (1, "complete")
        written.append((_stored(Judgement, judgement.pk), {**_stored(AuditEvent, event.pk), "target_id": ""}))
    (fast_j, fast_e), (slow_j, slow_e) = written
    per_pair = ("pair_id", "lease_id", "chosen_image_id")
    assert {k: v for k, v in fast_j.items() if k not in per_pair} == {
        k: v for k, v in slow_j.items() if k not in per_pair
    }
    assert fast_e == slow_e


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_judgement_writes_are_one_statement_that_writes_nothing_when_one_part_fails():
    """Outside any transaction (autocommit), so only the statement's own atomicity can keep the
    first writes from staying when the last one fails."""
    if connection.vendor != "postgresql":
        pytest.skip("one statement only on PostgreSQL")
    user = make_user("failing", disciplines=["chemistry"])
    pair, now = make_pair("RU"), timezone.now()
    lease = Lease.objects.create(
        pair=pair,
        annotator=user,
        left_image_id=pair.image_correct_id,
        right_image_id=pair.image_wrong_id,
        expires_at=now,
    )
    judgement = Judgement(pair=pair, annotator=user, lease=lease, choice="left", chosen_image_id=None)
    pair.judgement_count = 1
    assert connection.get_autocommit()
    with pytest.raises(IntegrityError):  # the audit event's actor does not exist: its INSERT, the last, fails
        judgement.annotator_id = 10**9
        queue_sql.write_judgement(judgement, pair, lease, now=now, after={})
    assert not Judgement.objects.exists() and not AuditEvent.objects.filter(action="judgement.created").exists()
    assert Pair.objects.values_list("judgement_count", flat=True).get(pk=pair.pk) == 0
    assert Lease.objects.values_list("state", flat=True).get(pk=lease.pk) == "active"


def test_a_judgement_and_its_consequences_run_under_one_lock_in_one_transaction():
    pair = make_pair("RU", k=1)
    user = make_user("consequent", disciplines=["chemistry"])
    lease = queue.next_lease(user)
    seen = []

    def consequences(locked, actor):
        seen.append((locked.pk, locked.judgement_count, locked.status, actor.pk, connection.in_atomic_block))
        raise RuntimeError("a consequence failed")

    with pytest.raises(RuntimeError):
        queue.submit_judgement(user, lease.id, queue.JudgementInput("left"), consequences=consequences)
    assert seen == [(pair.pk, 1, "complete", user.pk, True)]
    assert not Judgement.objects.exists()  # the failure of a consequence takes the judgement back
    assert Pair.objects.values_list("judgement_count", "status").get(pk=pair.pk) == (0, "open")
    judgement, created = judging.judge(user, lease.id, queue.JudgementInput("left"))
    assert created and judgement.pair_id == pair.pk
    assert (pair.consensus.n_judgements, pair.consensus.outcome in ("confirmed", "reversed")) == (1, True)


def test_the_lease_payload_is_what_its_declared_fields_describe(rf):
    """LeaseSerializer builds its payload directly (speed); its declared fields are the schema: same keys,
    and each field with a source renders the same value from the lease as DRF's field would."""
    from annotation.api_queue import JudgementReceiptSerializer, LeaseSerializer

    make_pair("RU")
    user = make_user("payload", disciplines=["chemistry"])
    client = APIClient()
    client.force_authenticate(user)
    lease = client.post("/api/queue/next/").json()
    stored = Lease.objects.select_related("pair__tuple__task__discipline").get(pk=lease["lease_id"])
    serializer = LeaseSerializer(stored, context={"request": rf.post("/api/queue/next/")})
    assert list(lease) == list(serializer.fields)
    for name, field in serializer.fields.items():
        if field.source != name or name in ("expires_at", "state"):
            assert lease[name] == field.to_representation(field.get_attribute(stored)), name
    task = stored.pair.tuple.task
    assert lease["task"] == {"code": task.code, "name": task.name, "kind": task.kind}
    assert lease["discipline"] == {"slug": task.discipline.slug, "name": task.discipline.name}
    for side in ("left", "right"):
        assert lease[f"{side}_image_url"] == f"http://testserver/api/leases/{stored.pk}/image/{side}/"
        assert client.get(lease[f"{side}_image_url"]).status_code == 200
    receipt = client.post(f"/api/leases/{stored.pk}/judgement/", {"choice": "left"}, format="json").json()
    assert receipt == JudgementReceiptSerializer(Judgement.objects.get(pk=receipt["judgement_id"])).data


def test_postgresql_prepares_the_queue_statements_after_their_fifth_run():
    """DATABASE_PREPARED_STATEMENTS (on by default): Django's server_side_binding and prepare_threshold
    options, so the queue's statements stop being planned on every request (docs/benchmarks/queue.md)."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature")
    assert connection.settings_dict["OPTIONS"].get("server_side_binding") is True
    user = make_user("prepared", disciplines=["chemistry"])
    for _ in range(8):
        make_pair("RU")
    for _ in range(7):
        lease = queue.next_lease(user)
        judging.judge(user, lease.id, queue.JudgementInput(choice="both"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [" ".join(row[0].split()) for row in cursor.fetchall()]
    for statement in (queue_sql.ANNOTATOR_STATE, queue_sql.JUDGEMENT_WRITES, queue_sql.PAIR_AND_LEASE):
        start = " ".join(statement.split())[:60]
        assert any(sql.startswith(start) for sql in prepared), (start, prepared)

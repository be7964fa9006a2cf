"""The queue under load and races, through the real HTTP API (DRF views, token auth, one PostgreSQL
connection per annotator thread): many annotators, vanishing and heartbeating annotators, a
heartbeat at the moment of expiry, undo racing with consensus recomputation, and what holds at the
end (:func:`tests.reliability.check_end_state`).

Each load test prints a ``FIGURES`` line (run with ``-s`` to see it): the counts behind
docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from annotation.models import AuditEvent, Judgement, Lease, Pair
from annotation.services import queue
from tests.concurrency import race
from tests.factories import make_pair
from tests.reliability import (
    CHOICES, Monitor, Tally, annotators, check_end_state, client_of, connect, figures, judge, refusal,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
]


# --- 1. many annotators, next -> judge until the pool is exhausted ----------------------------------


N_ANNOTATORS, N_PAIRS, K = 64, 128, 3


@pytest.mark.slow
def test_it_gives_every_pair_exactly_k_judgements_under_64_racing_annotators(settings):
    settings.GOLD_RATE = 0.0
    pairs = [make_pair("RU", k=K) for _ in range(N_PAIRS)]
    users = annotators("load", N_ANNOTATORS)
    holding: dict[int, int] = {}  # annotator id -> the lease id they hold now (what an intruder tries)
    tally = Tally()

    def annotate_until_empty(user):
        connect()
        rng, client, judged, rounds = random.Random(user.id), client_of(user), set(), 0
        while True:
            response = client.post("/api/queue/next/")
            tally.add(f"next_{response.status_code}")
            if response.status_code == 204:
                return rounds
            assert response.status_code == 200, response.content
            lease = response.json()
            assert lease["pair_id"] not in judged, "a pair handed twice to one annotator"
            with tally.lock:
                holding[user.id] = lease["lease_id"]
                others = [lid for uid, lid in holding.items() if uid != user.id]
            if rng.random() < 0.05:  # skip: the pair goes back to the others
                assert client.post(f"/api/leases/{lease['lease_id']}/release/").status_code == 200
                tally.add("skips")
                continue
            if others and rng.random() < 0.05:  # judge through someone else's lease
                assert refusal(judge(client, rng.choice(others), "left")) == (
                    404, "lease_not_found", "No such lease for this user.")
                tally.add("refused_not_your_lease")
            choice = rng.choice(CHOICES)
            first = judge(client, lease["lease_id"], choice)
            assert first.status_code == 201, first.content
            tally.created(user, lease["lease_id"], choice, first.json())
            judged.add(lease["pair_id"])
            rounds += 1
            if rng.random() < 0.1:  # the client retries after success
                again = judge(client, lease["lease_id"], choice)
                assert again.status_code == 200 and again.json() == first.json()
                tally.add("duplicate_submits_200")
            if rng.random() < 0.05:  # a changed mind sent to the same lease
                other = rng.choice([c for c in CHOICES if c != choice])
                assert refusal(judge(client, lease["lease_id"], other)) == (
                    409, "lease_not_active",
                    "This lease was already judged with another choice; use undo to change it.")
                tally.add("refused_other_choice")

    monitor = Monitor()
    monitor.start()
    started = time.monotonic()
    rounds, errors = race(users, annotate_until_empty)
    seconds = time.monotonic() - started
    monitor.finish()
    assert errors == []
    assert len(rounds) == N_ANNOTATORS and min(rounds.values()) >= 1

    pair_ids = [p.id for p in pairs]
    end = check_end_state(pair_ids)
    assert end["judgements"] == N_PAIRS * K == tally.counts["submits_201"] == sum(rounds.values())
    stored = dict(Judgement.objects.values_list("id", "annotator_id"))
    for judgement_id, (annotator_id, lease_id, choice) in tally.accepted.items():  # no 2xx without its row
        assert stored[judgement_id] == annotator_id
    assert set(stored) == set(tally.accepted)
    assert dict(Judgement.objects.filter(pk__in=stored).values_list("id", "choice")) == {
        jid: choice for jid, (_, _, choice) in tally.accepted.items()}
    assert AuditEvent.objects.filter(action="judgement.created").count() == N_PAIRS * K  # none for repeats
    assert not Lease.objects.filter(state="active").exists()
    assert monitor.samples > 0 and (monitor.over_k, monitor.counter_mismatch) == (0, 0)
    figures("load", annotators=N_ANNOTATORS, pairs=N_PAIRS, k=K, rounds=dict(sorted(Counter(rounds.values()).items())),
            seconds=round(seconds, 1), monitor_samples=monitor.samples, over_k=monitor.over_k,
            counter_mismatch=monitor.counter_mismatch, **dict(sorted(tally.counts.items())), **end)


# --- 2. lease expiry under load: vanishing and heartbeating annotators ----------------------------


def until_complete(user, client, pair_ids, deadline: float, tally: Tally, rng) -> int:
    """next -> judge until every pair of the pool is complete; a 204 while slots are still held
    (by annotators who vanished) is polled again, as the page does."""
    rounds = 0
    while time.monotonic() < deadline:
        response = client.post("/api/queue/next/")
        tally.add(f"next_{response.status_code}")
        if response.status_code == 204:
            if not Pair.objects.filter(pk__in=pair_ids, status=Pair.Status.OPEN).exists():
                return rounds
            time.sleep(0.2)
            continue
        assert response.status_code == 200, response.content
        lease = response.json()
        choice = rng.choice(CHOICES)
        first = judge(client, lease["lease_id"], choice)
        assert first.status_code == 201, first.content
        tally.created(user, lease["lease_id"], choice, first.json())
        rounds += 1
    raise AssertionError("the pool was not complete before the deadline")


@pytest.mark.slow
def test_it_hands_vanished_leases_to_others_after_the_ttl_and_keeps_heartbeated_ones(settings):
    settings.GOLD_RATE = 0.0
    ttl = 3
    settings.LEASE_TTL = timedelta(seconds=ttl)
    pair_ids = [make_pair("RU", k=K).id for _ in range(40)]
    vanishing, heartbeating, working = annotators("gone", 8), annotators("beat", 4), annotators("work", 20)
    roles = {u.id: role for role, group in (("gone", vanishing), ("beat", heartbeating), ("work", working))
             for u in group}
    tally, vanished, kept = Tally(), {}, {}
    deadline = time.monotonic() + 90

    def act(user):
        connect()
        rng, client = random.Random(user.id), client_of(user)
        if roles[user.id] == "work":
            return until_complete(user, client, pair_ids, deadline, tally, rng)
        lease = client.post("/api/queue/next/").json()
        if roles[user.id] == "gone":  # takes a pair and never comes back
            vanished[user.id] = lease
            return 0
        held_until = time.monotonic() + 2.5 * ttl
        expiry = lease["expires_at"]
        while time.monotonic() < held_until:  # keeps the lease alive for 2.5 TTLs (the page: every 60 s)
            time.sleep(0.5)
            beat = client.post(f"/api/leases/{lease['lease_id']}/heartbeat/")
            assert beat.status_code == 200, beat.content
            assert beat.json()["expires_at"] > expiry
            expiry = beat.json()["expires_at"]
            tally.add("heartbeats_200")
        choice = rng.choice(CHOICES)
        first = judge(client, lease["lease_id"], choice)
        assert first.status_code == 201, first.content  # the slot was still theirs
        tally.created(user, lease["lease_id"], choice, first.json())
        kept[user.id] = lease
        return 1 + until_complete(user, client, pair_ids, deadline, tally, rng)

    monitor = Monitor()
    monitor.start()
    started = time.monotonic()
    rounds, errors = race(vanishing + heartbeating + working, act)
    seconds = time.monotonic() - started
    monitor.finish()
    assert errors == []
    assert len(vanished) == 8 and len(kept) == 4
    end = check_end_state(pair_ids)
    assert end["judgements"] == len(pair_ids) * K == tally.counts["submits_201"]
    assert monitor.samples > 0 and (monitor.over_k, monitor.counter_mismatch) == (0, 0)

    for user_id, lease in vanished.items():
        row = Lease.objects.get(pk=lease["lease_id"])
        assert not Judgement.objects.filter(lease=row).exists()
        # the pair went on to others, on leases made after this one expired
        taken = Lease.objects.filter(pair_id=row.pair_id, created_at__gte=row.expires_at).exclude(annotator_id=user_id)
        assert taken.exists()
    for user_id, lease in kept.items():
        row = Lease.objects.get(pk=lease["lease_id"])
        assert row.state == "judged" and row.ended_at > row.created_at + timedelta(seconds=2 * ttl)

    # Late: half come back to an unreclaimed lease, half after the periodic task reclaimed theirs.
    late = Counter()
    gone = {u.id: u for u in vanishing}
    unreclaimed, reclaimed = list(vanished.items())[:4], list(vanished.items())[4:]
    for user_id, lease in unreclaimed:
        refused = refusal(judge(client_of(gone[user_id]), lease["lease_id"], "left"))
        assert refused == (409, "lease_not_active",
                           "This lease expired and its pair went to someone else; ask for the next pair.")
        late["late_submit_slot_taken_409"] += 1
    assert queue.reclaim_expired_leases() == len(reclaimed)
    for user_id, lease in reclaimed:
        client = client_of(gone[user_id])
        assert refusal(judge(client, lease["lease_id"], "left")) == (
            409, "lease_not_active", "This lease is expired; ask for the next pair.")
        assert refusal(client.post(f"/api/leases/{lease['lease_id']}/heartbeat/")) == (
            409, "lease_not_active", "This lease is expired; ask for the next pair.")
        late["late_submit_reclaimed_409"] += 1
        late["late_heartbeat_409"] += 1
    assert check_end_state(pair_ids) == end  # the refusals wrote nothing
    figures("expiry", annotators=32, vanished=8, heartbeating=4, ttl_s=ttl, pairs=len(pair_ids), k=K,
            seconds=round(seconds, 1), monitor_samples=monitor.samples, over_k=monitor.over_k,
            **dict(sorted(tally.counts.items())), **late, **end)


def test_a_heartbeat_at_the_moment_of_expiry_and_a_next_never_both_win_the_slot():
    """The heartbeat decides "still live" at one instant and writes later; meanwhile another
    annotator's next may count the lease as expired and take the slot. The lease row is held
    here to stretch that gap (as a busy machine does) across the moment of expiry."""
    pair = make_pair("RU", k=1)
    holder, other = annotators("edge", 2)
    lease = client_of(holder).post("/api/queue/next/").json()
    expires = time.monotonic() + 1.0
    Lease.objects.filter(pk=lease["lease_id"]).update(expires_at=timezone.now() + timedelta(seconds=1.0))
    answers = {}

    def call(name, user, path):
        connect()
        try:
            answers[name] = client_of(user).post(path)
        finally:
            connections.close_all()

    beat = threading.Thread(target=call, args=("beat", holder, f"/api/leases/{lease['lease_id']}/heartbeat/"))
    take = threading.Thread(target=call, args=("next", other, "/api/queue/next/"))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM annotation_lease WHERE id = %s FOR UPDATE", [lease["lease_id"]])
        beat.start()
        time.sleep(max(0.0, expires - time.monotonic()) + 0.3)  # the heartbeat waits; the lease expires
        take.start()
        time.sleep(1.0)
    for thread in (beat, take):
        thread.join(timeout=30)
    kept, taken = answers["beat"].status_code == 200, answers["next"].status_code == 200
    live = Lease.objects.filter(pair=pair, state="active", expires_at__gt=timezone.now()).count()
    assert live <= pair.k, (answers["beat"].status_code, answers["next"].status_code)
    assert kept != taken  # exactly one of them has the slot


def test_a_heartbeat_that_waited_for_the_pair_across_the_expiry_does_not_take_the_slot_back():
    """The slow path of the heartbeat waits for the pair lock; if the lease expired meanwhile and
    the holder of that lock handed the slot on, the heartbeat must be refused, not extend it."""
    pair = make_pair("RU", k=1)
    holder, other = annotators("wait", 2)
    lease = client_of(holder).post("/api/queue/next/").json()
    expires = time.monotonic() + 1.0
    Lease.objects.filter(pk=lease["lease_id"]).update(expires_at=timezone.now() + timedelta(seconds=1.0))
    answers = {}

    def beat():
        connect()
        try:
            answers["beat"] = client_of(holder).post(f"/api/leases/{lease['lease_id']}/heartbeat/")
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat)
    with transaction.atomic():  # another annotator's next, holding the pair across the expiry
        Pair.objects.select_for_update().get(pk=pair.pk)
        thread.start()
        time.sleep(max(0.0, expires - time.monotonic()) + 0.3)
        taken = queue.next_lease(other)
        assert taken is not None and taken.pair_id == pair.id
    thread.join(timeout=30)
    assert refusal(answers["beat"]) == (
        409, "lease_not_active", "This lease expired and its pair went to someone else; ask for the next pair.")
    assert Lease.objects.get(pk=lease["lease_id"]).state == "expired"
    assert Lease.objects.filter(pair=pair, state="active", expires_at__gt=timezone.now()).count() == 1

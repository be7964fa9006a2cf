"""Lease expiry under load, through the real HTTP API: annotators who vanish mid-lease, annotators
who keep theirs alive with heartbeats past the TTL, late submits, and a heartbeat racing the moment
of expiry against another annotator's next. Prints a ``FIGURES`` line (``-s``).
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

from annotation.models import Judgement, Lease, Pair
from annotation.services import queue
from tests.support.concurrency import race
from tests.support.factories import make_pair
from tests.support.reliability import (
    CHOICES,
    Monitor,
    Tally,
    annotators,
    check_end_state,
    client_of,
    connect,
    figures,
    judge,
    refusal,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
]

K = 3


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
    roles = {
        u.id: role for role, group in (("gone", vanishing), ("beat", heartbeating), ("work", working)) for u in group
    }
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
    for lease in kept.values():
        row = Lease.objects.get(pk=lease["lease_id"])
        assert row.state == "judged" and row.ended_at > row.created_at + timedelta(seconds=2 * ttl)

    # Late: half come back to an unreclaimed lease, half after the periodic task reclaimed theirs.
    late = Counter()
    gone = {u.id: u for u in vanishing}
    unreclaimed, reclaimed = list(vanished.items())[:4], list(vanished.items())[4:]
    for user_id, lease in unreclaimed:
        refused = refusal(judge(client_of(gone[user_id]), lease["lease_id"], "left"))
        assert refused == (
            409,
            "lease_not_active",
            "This lease expired and its pair went to someone else; ask for the next pair.",
        )
        late["late_submit_slot_taken_409"] += 1
    assert queue.reclaim_expired_leases() == len(reclaimed)
    for user_id, lease in reclaimed:
        client = client_of(gone[user_id])
        assert refusal(judge(client, lease["lease_id"], "left")) == (
            409,
            "lease_not_active",
            "This lease is expired; ask for the next pair.",
        )
        assert refusal(client.post(f"/api/leases/{lease['lease_id']}/heartbeat/")) == (
            409,
            "lease_not_active",
            "This lease is expired; ask for the next pair.",
        )
        late["late_submit_reclaimed_409"] += 1
        late["late_heartbeat_409"] += 1
    assert check_end_state(pair_ids) == end  # the refusals wrote nothing
    figures(
        "expiry",
        annotators=32,
        vanished=8,
        heartbeating=4,
        ttl_s=ttl,
        pairs=len(pair_ids),
        k=K,
        seconds=round(seconds, 1),
        monitor_samples=monitor.samples,
        over_k=monitor.over_k,
        **dict(sorted(tally.counts.items())),
        **late,
        **end,
    )


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
        409,
        "lease_not_active",
        "This lease expired and its pair went to someone else; ask for the next pair.",
    )
    assert Lease.objects.get(pk=lease["lease_id"]).state == "expired"
    assert Lease.objects.filter(pair=pair, state="active", expires_at__gt=timezone.now()).count() == 1

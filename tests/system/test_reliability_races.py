"""The queue under load and races, through the real HTTP API (DRF views, token auth, one PostgreSQL
connection per annotator thread): 64 racing annotators until the pool is exhausted, undo racing with
consensus recomputation and with takers of the freed slot, a double-pressed undo, and what holds at
the end (:func:`tests.support.reliability.check_end_state`). Lease expiry under load:
tests/system/test_reliability_expiry.py; duplicate submissions and every judgement path:
tests/system/test_reliability_judgement_paths.py.

Each load test prints a ``FIGURES`` line (run with ``-s`` to see it): the counts behind
docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections

from annotation.models import AuditEvent, Judgement, Lease
from annotation.services import queue
from curation.models import Consensus
from curation.services import judging
from curation.services.consensus import recompute_all, recompute_consensus
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
                    404,
                    "lease_not_found",
                    "No such lease for this user.",
                )
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
                    409,
                    "lease_not_active",
                    "This lease was already judged with another choice; use undo to change it.",
                )
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
    for judgement_id, (annotator_id, _lease_id, _choice) in tally.accepted.items():  # no 2xx without its row
        assert stored[judgement_id] == annotator_id
    assert set(stored) == set(tally.accepted)
    assert dict(Judgement.objects.filter(pk__in=stored).values_list("id", "choice")) == {
        jid: choice for jid, (_, _, choice) in tally.accepted.items()
    }
    assert AuditEvent.objects.filter(action="judgement.created").count() == N_PAIRS * K  # none for repeats
    assert not Lease.objects.filter(state="active").exists()
    assert monitor.samples > 0 and (monitor.over_k, monitor.counter_mismatch) == (0, 0)
    figures(
        "load",
        annotators=N_ANNOTATORS,
        pairs=N_PAIRS,
        k=K,
        rounds=dict(sorted(Counter(rounds.values()).items())),
        seconds=round(seconds, 1),
        monitor_samples=monitor.samples,
        over_k=monitor.over_k,
        counter_mismatch=monitor.counter_mismatch,
        **dict(sorted(tally.counts.items())),
        **end,
    )


# --- 2. undo racing with consensus recomputation and with others taking the freed slot -------------


def consensus_snapshot(pair_ids) -> dict:
    return {
        c.pair_id: (c.outcome, c.label, c.n_judgements, c.counts, c.agreement)
        for c in Consensus.objects.filter(pair_id__in=pair_ids)
    }


@pytest.mark.slow
def test_undo_racing_with_recomputation_and_takers_leaves_counters_and_consensus_consistent(settings):
    settings.GOLD_RATE = 0.0
    pair_ids = [make_pair("RU", k=K).id for _ in range(24)]
    first, takers = annotators("first", 12), annotators("taker", 8)

    def fill(user):  # phase 1, through the service: every pair at k
        rng, done = random.Random(user.id), 0
        while (lease := queue.next_lease(user)) is not None:
            judging.judge(user, lease.id, queue.JudgementInput(rng.choice(CHOICES)))
            done += 1
        return done

    _, errors = race(first, fill)
    assert errors == [] and Judgement.objects.count() == len(pair_ids) * K
    tally, undoers_done, stop = Tally(), threading.Semaphore(0), threading.Event()

    def undo_then_drain(user):
        connect()
        rng, client = random.Random(user.id), client_of(user)
        for _ in range(2):
            latest = Judgement.objects.filter(annotator=user).order_by("-created_at", "-id").first()
            response = client.post("/api/judgements/undo/")
            assert response.status_code == 200, response.content
            lease = response.json()
            assert lease["pair_id"] == latest.pair_id
            tally.add("undos_200")
            if rng.random() < 0.5:
                choice = rng.choice(CHOICES)
                again = judge(client, lease["lease_id"], choice)
                assert again.status_code == 201, again.content
                tally.created(user, lease["lease_id"], choice, again.json())
            else:  # frees the slot for the takers
                assert client.post(f"/api/leases/{lease['lease_id']}/release/").status_code == 200
                tally.add("released_after_undo")
        undoers_done.release()
        return take_until_done(user, client, rng)

    def take_until_done(user, client, rng):
        rounds = 0
        while True:
            response = client.post("/api/queue/next/")
            tally.add(f"next_{response.status_code}")
            if response.status_code == 204:
                if all_undone.is_set():
                    return rounds
                time.sleep(0.05)
                continue
            lease, choice = response.json(), rng.choice(CHOICES)
            answer = judge(client, lease["lease_id"], choice)
            assert answer.status_code == 201, answer.content
            tally.created(user, lease["lease_id"], choice, answer.json())
            rounds += 1

    all_undone = threading.Event()

    def act(user):
        if user in takers:
            connect()
            return take_until_done(user, client_of(user), random.Random(user.id))
        return undo_then_drain(user)

    def recompute():
        connect()
        passes, rng = 0, random.Random(0)
        try:
            while not stop.is_set():
                for pair_id in rng.sample(pair_ids, len(pair_ids)):
                    recompute_consensus(pair_id)
                    tally.add("recomputes_during_undos" if not all_undone.is_set() else "recomputes_after_undos")
                passes += 1
                if passes % 3 == 0:
                    recompute_all()
        finally:
            connections.close_all()

    def wait_for_undoers():
        for _ in first:
            undoers_done.acquire(timeout=60)
        all_undone.set()

    helpers = [threading.Thread(target=recompute), threading.Thread(target=wait_for_undoers)]
    monitor = Monitor()
    monitor.start()
    for thread in helpers:
        thread.start()
    _, errors = race(first + takers, act)
    stop.set()
    for thread in helpers:
        thread.join(timeout=60)
    monitor.finish()
    assert errors == [] and tally.counts["recomputes_during_undos"] > 0

    end = check_end_state(pair_ids)  # every freed slot was taken again: exactly k everywhere
    assert monitor.samples > 0 and (monitor.over_k, monitor.counter_mismatch) == (0, 0)
    created = AuditEvent.objects.filter(action="judgement.created").count()
    undone = AuditEvent.objects.filter(action="judgement.undone").count()
    assert undone == tally.counts["undos_200"] == 2 * len(first)
    assert created - undone == Judgement.objects.count() == len(pair_ids) * K
    stored = consensus_snapshot(pair_ids)
    Consensus.objects.all().delete()
    recompute_all()
    assert consensus_snapshot(pair_ids) == stored  # the stored rows are what a rebuild from scratch gives
    figures(
        "undo",
        annotators=len(first) + len(takers),
        pairs=len(pair_ids),
        k=K,
        monitor_samples=monitor.samples,
        over_k=monitor.over_k,
        **dict(sorted(tally.counts.items())),
        **end,
    )


def test_a_double_pressed_undo_takes_back_one_judgement_per_2xx_and_stays_consistent():
    """Four undo requests at once: each 200 takes back one judgement (the newest first), the others
    are 404 ``nothing_to_undo``; whatever the interleaving, the annotator ends with one live lease
    and counters and consensus agree with the rows."""
    pair_ids = [make_pair("RU", k=K).id for _ in range(3)]
    (user,) = annotators("undo2x", 1)
    for _ in pair_ids:
        lease = queue.next_lease(user)
        judging.judge(user, lease.id, queue.JudgementInput("left"))
    newest_first = list(
        Judgement.objects.filter(annotator=user).order_by("-created_at", "-id").values_list("pair_id", flat=True)
    )
    barrier, answers = threading.Barrier(4), []

    def press():
        connect()
        try:
            barrier.wait(timeout=30)
            answers.append(client_of(user).post("/api/judgements/undo/"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ok = [a.json() for a in answers if a.status_code == 200]
    refused = [refusal(a) for a in answers if a.status_code != 200]
    assert len(ok) >= 1 and len(ok) + len(refused) == 4
    assert {r[:2] for r in refused} <= {(404, "nothing_to_undo")}
    left = list(Judgement.objects.filter(annotator=user).values_list("pair_id", flat=True))
    assert sorted(left) == sorted(newest_first[len(ok) :])  # exactly one judgement per 200, newest first
    assert {a["pair_id"] for a in ok} == set(newest_first[: len(ok)])
    live = Lease.objects.filter(annotator=user, state="active")
    assert live.count() == 1 and live.get().pair_id in newest_first[: len(ok)]
    check_end_state(pair_ids, exactly_k=False)

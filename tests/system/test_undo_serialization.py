"""Undo and judgement serialize per annotator, and a named undo is idempotent (issue: an undo and a
judgement sent together could both succeed against the state before either).

Through the real HTTP API with token auth, two threads with their own PostgreSQL connections: with pair
A judged and pair B leased, an undo and a judgement of B are released together, 30 times. Every outcome
must be one a serial execution gives: the judgement first (201), then the undo takes back B's judgement;
or the undo first (A taken back, B's lease cancelled), then the judgement is refused (409).
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from annotation.models import Judgement, Lease, Pair
from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_pair
from tests.support.reliability import annotators, client_of, connect, judge

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.slow]

TRIALS = 30


def together(*calls):
    """Run the calls at once, each in its own thread and database connection; their answers in order."""
    barrier, answers = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index, call):
        connect()
        try:
            barrier.wait(timeout=30)
            answers[index] = call()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_an_undo_and_a_judgement_sent_together_run_in_some_serial_order(settings):
    settings.GOLD_RATE = 0.0
    outcomes = []
    for trial in range(TRIALS):
        (user,) = annotators(f"serial{trial}-", 1)
        Pair.objects.update(status=Pair.Status.RETIRED)  # the earlier trials' pairs are out of the way
        a, b = make_pair("RU"), make_pair("RU")
        lease_a = queue.next_lease(user)
        judging.judge(user, lease_a.id, queue.JudgementInput("left"))
        lease_b = queue.next_lease(user)
        assert {lease_a.pair_id, lease_b.pair_id} == {a.id, b.id}
        client = client_of(user)
        undone, judged = together(
            lambda client=client: client.post("/api/judgements/undo/"),
            lambda client=client, lease_b=lease_b: judge(client, lease_b.id, "right"),
        )
        assert undone.status_code == 200, undone.content
        left = set(Judgement.objects.filter(annotator=user).values_list("pair_id", flat=True))
        if judged.status_code == 201:  # the judgement first: the undo took back B's judgement
            outcomes.append("judge, then undo")
            assert undone.json()["pair_id"] == lease_b.pair_id
            assert left == {lease_a.pair_id}
        else:  # the undo first: A taken back, B's lease cancelled, the judgement refused
            outcomes.append("undo, then judge")
            assert (judged.status_code, judged.json()["code"]) == (409, "lease_not_active")
            assert undone.json()["pair_id"] == lease_a.pair_id
            assert left == set()
        live = Lease.objects.filter(annotator=user, state="active")
        assert live.count() == 1 and live.get().pair_id == undone.json()["pair_id"]
    print("FIGURES undo_vs_judge", {o: outcomes.count(o) for o in set(outcomes)})


def test_a_named_undo_sent_twice_takes_back_one_judgement():
    (user,) = annotators("named", 1)
    pairs = [make_pair("RU") for _ in range(2)]
    client = client_of(user)
    for _ in pairs:
        lease = client.post("/api/queue/next/").json()
        assert judge(client, lease["lease_id"], "left").status_code == 201
    first, latest = Judgement.objects.filter(annotator=user).order_by("created_at", "id")
    answers = together(
        *[lambda: client.post("/api/judgements/undo/", {"judgement_id": latest.id}, format="json") for _ in range(3)]
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.content for a in answers]
    assert {a.json()["lease_id"] for a in answers} == {Lease.objects.get(annotator=user, state="active").id}
    assert list(Judgement.objects.filter(annotator=user).values_list("id", flat=True)) == [first.id]
    # once its lease is gone (judged again), a repeat is refused rather than taking back anything else
    assert judge(client, answers[0].json()["lease_id"], "both").status_code == 201
    repeat = client.post("/api/judgements/undo/", {"judgement_id": latest.id}, format="json")
    assert (repeat.status_code, repeat.json()["code"]) == (409, "already_undone")
    assert Judgement.objects.filter(annotator=user).count() == 2
    # an older judgement can be named too, and someone else's cannot
    (other,) = annotators("other", 1)
    assert client_of(other).post("/api/judgements/undo/", {"judgement_id": first.id}, format="json").status_code == 404
    assert (
        client.post("/api/judgements/undo/", {"judgement_id": first.id}, format="json").json()["pair_id"]
        == first.pair_id
    )
    for body in ([1], {"judgement_id": "x"}, {"judgement_id": 0}):
        assert client.post("/api/judgements/undo/", body, format="json").status_code == 400

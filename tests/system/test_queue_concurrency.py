"""Real parallel database connections racing for the queue (PostgreSQL row locks at work).

Each thread is one annotator with its own connection; a barrier releases them together.
"""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from annotation.models import Judgement, Lease, Pair
from annotation.services import queue
from curation.services import judging
from tests.support.concurrency import race
from tests.support.factories import make_pair, make_user

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
]


def _annotators(n):
    return [make_user(f"racer{i}", disciplines=["chemistry"]) for i in range(n)]


def test_it_gives_one_pair_to_exactly_k_of_32_racing_annotators():
    pair = make_pair("RU", k=3)
    users = _annotators(32)

    leases, errors = race(users, lambda u: queue.next_lease(u))
    assert errors == []
    winners = [name for name, lease in leases.items() if lease is not None]
    assert len(winners) == 3
    assert Lease.objects.filter(pair=pair, state="active").count() == 3

    def judge_if_holding(user):
        lease = leases[user.username]
        if lease is None:
            return None
        return judging.judge(user, lease.id, queue.JudgementInput("left"))[0].id

    judged, errors = race(users, judge_if_holding)
    assert errors == []
    pair.refresh_from_db()
    assert Judgement.objects.filter(pair=pair).count() == pair.judgement_count == 3
    assert pair.status == Pair.Status.COMPLETE

    again, errors = race(users, lambda u: queue.next_lease(u))
    assert errors == [] and all(lease is None for lease in again.values())


def test_it_never_overfills_many_pairs_under_a_next_judge_loop():
    pairs = [make_pair("RU", k=3) for _ in range(12)]
    users = _annotators(32)

    def annotate_until_empty(user):
        done = 0
        while True:
            lease = queue.next_lease(user)
            if lease is None:
                return done
            judging.judge(user, lease.id, queue.JudgementInput("right"))
            done += 1

    counts, errors = race(users, annotate_until_empty)
    assert errors == []
    assert sum(counts.values()) == 12 * 3
    per_pair = Counter(Judgement.objects.values_list("pair_id", flat=True))
    assert per_pair == {p.id: 3 for p in pairs}
    per_annotator_pair = Counter(Judgement.objects.values_list("pair_id", "annotator_id"))
    assert max(per_annotator_pair.values()) == 1
    for pair in Pair.objects.all():
        assert pair.judgement_count == per_pair[pair.id] and pair.status == Pair.Status.COMPLETE
    assert not Lease.objects.filter(state="active").exists()


def test_it_keeps_one_live_lease_when_one_annotator_asks_in_parallel():
    make_pair("RU", k=3)
    make_pair("RU", k=3)
    user = _annotators(1)[0]
    same_user_many_times = [user] * 8
    barrier = threading.Barrier(len(same_user_many_times))
    got, errors = [], []

    def ask():
        try:
            barrier.wait(timeout=30)
            got.append(queue.next_lease(user).id)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in same_user_many_times]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(got)) == 1
    assert Lease.objects.filter(annotator=user).count() == 1

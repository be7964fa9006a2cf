"""Gold pairs in the queue: mixed in at GOLD_RATE, served to every qualified annotator once, outside
k and capacity, indistinguishable from normal pairs; paused annotators get nothing."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Judgement, Lease, Pair
from annotation.services import catalog, queue
from curation.services import gold, judging
from tests.support.concurrency import race
from tests.support.factories import make_pair, make_user
from tests.support.judging import chemist

pytestmark = pytest.mark.django_db


@pytest.fixture
def gold_pair(admin_user):
    pair = make_pair("RU", k=1)
    gold.mark_gold(admin_user, pair.id, "expected")
    return pair


def judge_next(user, choice="left") -> Lease:
    lease = queue.next_lease(user)
    judging.judge(user, lease.id, queue.JudgementInput(choice))
    return lease


def test_it_serves_a_gold_pair_first_at_rate_one(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    make_pair("RU")
    assert queue.next_lease(annotator).pair_id == gold_pair.id


def test_it_serves_normal_pairs_first_at_rate_zero_and_gold_only_when_nothing_else_is_left(
    settings, annotator, gold_pair
):
    settings.GOLD_RATE = 0
    normal = {make_pair("RU").id for _ in range(5)}
    served = [judge_next(annotator).pair_id for _ in range(6)]
    assert set(served[:5]) == normal
    assert served[5] == gold_pair.id
    assert queue.next_lease(annotator) is None


def test_it_falls_back_to_normal_pairs_when_no_gold_pair_is_open_to_the_annotator(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    normal = make_pair("RU")
    judge_next(annotator)  # the gold pair
    assert queue.next_lease(annotator).pair_id == normal.id


def test_it_serves_gold_only_inside_the_expertise(settings, admin_user, outsider):
    settings.GOLD_RATE = 1
    gold.mark_gold(admin_user, make_pair("RU").id, "expected")
    assert queue.next_lease(outsider) is None


def test_it_serves_a_gold_pair_beyond_k_to_every_annotator_once(settings, gold_pair):
    settings.GOLD_RATE = 1
    users = [chemist() for _ in range(5)]
    leases = [queue.next_lease(user) for user in users]  # five live leases on a k=1 pair
    assert {lease.pair_id for lease in leases} == {gold_pair.id}
    for user, lease in zip(users, leases, strict=True):
        assert judging.judge(user, lease.id, queue.JudgementInput("both"))[1]
        assert queue.next_lease(user) is None
    gold_pair.refresh_from_db()
    assert gold_pair.judgement_count == Judgement.objects.filter(pair=gold_pair).count() == 5
    assert gold_pair.status == Pair.Status.OPEN


def test_it_leaves_normal_capacity_untouched_by_gold_leases(settings, gold_pair):
    settings.GOLD_RATE = 1
    normal = make_pair("RU", k=2)
    for _ in range(3):
        assert queue.next_lease(chemist()).pair_id == gold_pair.id
    settings.GOLD_RATE = 0
    assert [queue.next_lease(chemist()).pair_id for _ in range(2)] == [normal.id, normal.id]
    assert queue.next_lease(chemist()).pair_id == gold_pair.id  # normal is full: gold is the fallback


def test_it_never_serves_a_retired_gold_pair(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    catalog.set_pair_retired(gold_pair.id, True)
    assert queue.next_lease(annotator) is None


def test_it_serves_a_skipped_gold_pair_after_the_rest_of_the_queue(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    normal = make_pair("RU")
    queue.release(annotator, queue.next_lease(annotator).id)
    assert judge_next(annotator).pair_id == normal.id
    assert queue.next_lease(annotator).pair_id == gold_pair.id


def test_it_gives_a_gold_lease_the_same_payload_as_any_other(api, settings, admin_user):
    settings.GOLD_RATE = 1
    normal = make_pair("RU")
    gold.mark_gold(admin_user, make_pair("RU").id, "expected")
    gold_user, normal_user = chemist(), chemist()
    api.force_authenticate(gold_user)
    gold_lease = api.post("/api/queue/next/")
    settings.GOLD_RATE = 0
    api.force_authenticate(normal_user)
    normal_lease = api.post("/api/queue/next/").json()
    assert normal_lease["pair_id"] == normal.id
    assert set(gold_lease.json()) == set(normal_lease)
    assert "gold" not in gold_lease.content.decode().lower()
    receipt = api.post(f"/api/leases/{normal_lease['lease_id']}/judgement/", {"choice": "left"})
    api.force_authenticate(gold_user)
    gold_receipt = api.post(f"/api/leases/{gold_lease.json()['lease_id']}/judgement/", {"choice": "left"})
    assert gold_receipt.status_code == receipt.status_code == 201
    assert set(gold_receipt.json()) == set(receipt.json())


def test_it_randomises_the_display_order_of_gold_pairs(settings, admin_user):
    settings.GOLD_RATE = 1
    user = chemist()
    for _ in range(24):
        gold.mark_gold(admin_user, make_pair("RU").id, "both")
    lefts = []
    for _ in range(24):
        lease = judge_next(user, "both")
        assert lease.pair.is_gold
        lefts.append(lease.left_image_id == lease.pair.image_correct_id)
    assert 0 < sum(lefts) < len(lefts)


def test_it_accepts_a_late_gold_judgement_while_others_hold_the_pair(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    lease = queue.next_lease(annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    queue.next_lease(chemist())
    assert queue.heartbeat(annotator, lease.id).state == Lease.State.ACTIVE
    assert judging.judge(annotator, lease.id, queue.JudgementInput("left"))[1]


def test_it_keeps_the_gold_counter_equal_to_the_rows_through_an_undo(settings, annotator, gold_pair):
    settings.GOLD_RATE = 1
    judge_next(chemist())
    judge_next(annotator)
    again = judging.undo(annotator)
    assert again.pair_id == gold_pair.id
    gold_pair.refresh_from_db()
    assert gold_pair.judgement_count == Judgement.objects.filter(pair=gold_pair).count() == 1
    assert judging.judge(annotator, again.id, queue.JudgementInput("right"))[1]
    gold_pair.refresh_from_db()
    assert (gold_pair.judgement_count, gold_pair.status) == (2, Pair.Status.OPEN)


def test_it_refuses_a_paused_annotator_with_403_paused(api, settings, annotator):
    settings.GOLD_RATE = 0
    make_pair("RU")
    api.force_authenticate(annotator)
    lease = api.post("/api/queue/next/").json()
    api.post(f"/api/leases/{lease['lease_id']}/judgement/", {"choice": "left"})
    annotator.expertise.paused = True
    annotator.expertise.save()
    for url in ("/api/queue/next/", "/api/judgements/undo/"):
        response = api.post(url)
        assert response.status_code == 403, url
        body = response.json()
        assert body["code"] == "paused"
        assert "is paused" in body["detail"] and "admin" in body["detail"]
    with pytest.raises(queue.AnnotatorPaused):
        queue.next_lease(annotator)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL")
def test_it_serves_one_gold_pair_to_16_racing_annotators_once_each(settings):
    settings.GOLD_RATE = 1
    admin = make_user("race-boss", "admin")
    pair = make_pair("RU", k=1)
    gold.mark_gold(admin, pair.id, "expected")
    normal = make_pair("RU", k=2)
    users = [make_user(f"gold-racer{i}", disciplines=["chemistry"]) for i in range(16)]

    def annotate_until_empty(user):
        while (lease := queue.next_lease(user)) is not None:
            judging.judge(user, lease.id, queue.JudgementInput("left"))

    _, errors = race(users, annotate_until_empty)
    assert errors == []
    per_pair = Counter(Judgement.objects.values_list("pair_id", flat=True))
    assert per_pair == {pair.id: 16, normal.id: 2}
    assert max(Counter(Judgement.objects.values_list("pair_id", "annotator_id")).values()) == 1
    pair.refresh_from_db()
    normal.refresh_from_db()
    assert (pair.judgement_count, pair.status) == (16, Pair.Status.OPEN)
    assert (normal.judgement_count, normal.status) == (2, Pair.Status.COMPLETE)

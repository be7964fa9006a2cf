"""The queue with qualification sets (annotation/services/queue.py, queue_sql.py): an annotator still
answering a task's set is served only its pairs from that task (normal pairs of other tasks go on); after
passing, the task's pairs as usual; after failing, nothing of the task, and the pages say why. No judgement
of an unqualified annotator reaches a normal pair, so none counts toward k. Other annotators, and tasks
without a set, are unaffected; ``next`` runs as many statements as before."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Judgement, Pair, Qualification
from annotation.services import qualification, queue
from annotation.stats import annotator_stats
from curation.services import gold, judging
from tests.support.factories import make_pair, make_user
from tests.support.judging import chemist, choice_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_gold_mixing(settings):
    settings.GOLD_RATE = 0.0  # gold mixed in at random would make the order of leases random
    settings.QUALIFICATION_MIN_ACCURACY = 0.8


@pytest.fixture
def rust(admin_user):
    """Task RU (Rust) with three normal pairs and a qualification set of two gold pairs; IM with one pair."""
    normal = [make_pair("RU") for _ in range(3)]
    qualifying = []
    for _ in range(2):
        pair = make_pair("RU")
        gold.mark_gold(admin_user, pair.id, "expected", qualification=True)
        qualifying.append(pair)
    other_task = make_pair("IM")
    return {"normal": normal, "set": qualifying, "other_task": other_task}


def answer(user, label: str, **filters) -> Pair:
    """``user`` asks for the next pair and gives it ``label``; returns the pair."""
    lease = queue.next_lease(user, **filters)
    assert lease is not None
    judging.judge(user, lease.id, queue.JudgementInput(choice_for(lease, label)))
    return Pair.objects.get(pk=lease.pair_id)


def test_a_pending_annotator_gets_only_the_qualification_pairs_of_the_task_and_normal_pairs_of_others(rust):
    user = chemist()
    set_ids = {p.id for p in rust["set"]}
    first = queue.next_lease(user)
    assert first.pair_id in set_ids  # tried first
    queue.release(user, first.id)
    second = queue.next_lease(user)
    assert second.pair_id in set_ids - {first.pair_id}
    queue.release(user, second.id)
    # Both skipped: the other task's normal pair comes before the skipped qualification pairs, never RU's.
    third = queue.next_lease(user)
    assert third.pair_id == rust["other_task"].id
    judging.judge(user, third.id, queue.JudgementInput("left"))
    assert queue.next_lease(user).pair_id in set_ids
    assert queue.next_lease(user, task="IM") is not None  # the live lease, whatever the filter
    assert not Judgement.objects.filter(annotator=user, pair__in=rust["normal"]).exists()


def test_a_passed_annotator_gets_the_normal_pairs_next(rust):
    user = chemist()
    answered = {answer(user, "expected", task="RU").id for _ in range(2)}
    assert answered == {p.id for p in rust["set"]}
    row = Qualification.objects.get(user=user, task__code="RU")
    assert (row.passed, row.correct, row.answered, row.decided_by) == (True, 2, 2, None)
    assert answer(user, "expected", task="RU").id in {p.id for p in rust["normal"]}


def test_a_failed_annotator_gets_nothing_of_the_task_and_the_pages_say_why(rust, client):
    user = chemist()
    answer(user, "other", task="RU")
    answer(user, "expected", task="RU")  # 1 of 2 right: below 0.8
    row = Qualification.objects.get(user=user, task__code="RU")
    assert (row.passed, row.correct, row.answered) == (False, 1, 2)
    assert queue.next_lease(user, task="RU") is None
    lease = queue.next_lease(user)
    assert lease.pair_id == rust["other_task"].id
    judging.judge(user, lease.id, queue.JudgementInput("left"))
    assert queue.next_lease(user) is None
    stats = annotator_stats(user)
    assert stats.pairs_left == 0
    assert [row.task.code for row in stats.failed] == ["RU"]
    client.force_login(user)
    page = client.get("/annotate/").content.decode()
    assert "You did not pass the qualification for Rust; an admin can let you retry." in page
    assert "You did not pass the qualification for Rust" in client.get("/").content.decode()


def test_no_judgement_of_an_unqualified_annotator_counts_toward_k(rust):
    failing, pending = chemist(), chemist()
    answer(failing, "other", task="RU")
    answer(failing, "other", task="RU")
    while (lease := queue.next_lease(failing)) is not None:
        judging.judge(failing, lease.id, queue.JudgementInput("left"))
    answer(pending, "expected", task="RU")
    for _ in range(4):
        lease = queue.next_lease(pending, task="RU")
        assert lease.pair_id in {p.id for p in rust["set"]}
        queue.release(pending, lease.id)
    normal = Pair.objects.filter(pk__in=[p.id for p in rust["normal"]])
    assert [p.judgement_count for p in normal] == [0, 0, 0]
    assert not Judgement.objects.filter(pair__is_gold=False, pair__tuple__task__code="RU").exists()
    assert Judgement.objects.filter(annotator=failing, pair=rust["other_task"]).exists()  # IM has no set


def test_other_annotators_and_tasks_without_a_set_are_unaffected(rust, admin_user):
    pending, passed = chemist(), chemist()
    for _ in range(2):
        answer(passed, "expected", task="RU")
    assert answer(passed, "expected", task="RU").id in {p.id for p in rust["normal"]}
    assert queue.next_lease(pending).pair_id in {p.id for p in rust["set"]}
    biologist = make_user("bio-q", disciplines=["biology"])
    make_pair("RI")
    assert queue.next_lease(biologist) is not None
    assert annotator_stats(biologist).qualifying == []
    # An admin lets the pending annotator work without answering.
    qualification.decide(admin_user, pending, rust["set"][0].tuple.task, True)
    queue.release(pending, queue.next_lease(pending).id)
    assert queue.next_lease(pending).pair_id in {p.id for p in rust["normal"]} | {rust["other_task"].id}


def _next_statements(user) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    with CaptureQueriesContext(connection) as ctx:
        response = client.post("/api/queue/next/")
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_next_runs_as_many_statements_with_a_qualification_set_as_without(rust):
    plain = make_user("plain", disciplines=["biology"])
    make_pair("RI")
    without_set = _next_statements(plain)
    pending = chemist()
    assert _next_statements(pending) == without_set
    assert Pair.objects.get(leases__annotator=pending).is_qualification
    passed = chemist()
    for _ in range(2):
        answer(passed, "expected", task="RU")
    assert _next_statements(passed) == without_set
    assert not Pair.objects.get(leases__annotator=passed, leases__state="active").is_gold


def test_the_home_page_counts_only_the_qualification_pairs_left_while_pending(rust, client):
    user = chemist()
    answer(user, "expected", task="RU")
    stats = annotator_stats(user)
    row = next(row for row in stats.tasks if row.task.code == "RU")
    assert (row.left, row.qualification.answered, row.qualification.size) == (1, 1, 2)
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "Qualification for Rust: 1 of 2 answered." in page
    for pair in rust["set"]:  # never which pairs
        assert pair.tuple.implicit_prompt not in page

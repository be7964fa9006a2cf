"""Qualification sets in curation (curation/services/gold.py, curation/views_guides.py, curation/api_gold.py):
the assessment once the whole set is answered, at QUALIFICATION_MIN_ACCURACY; an undo takes it back; an
admin's decision is audited and sticks; the gold API's ``qualification`` field; unmarking gold or shrinking
the set; the guide page's toggles and decisions."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from annotation.models import AuditEvent, Pair, Qualification, Task
from annotation.services import qualification, queue
from curation.services import gold, judging
from tests.support.factories import make_pair
from tests.support.judging import chemist, choice_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.GOLD_RATE = 0.0
    settings.QUALIFICATION_MIN_ACCURACY = 0.8


@pytest.fixture
def rust_set(admin_user):
    """Five gold pairs of RU in its qualification set, and one normal pair."""
    pairs = []
    for _ in range(5):
        pair = make_pair("RU")
        gold.mark_gold(admin_user, pair.id, "expected", qualification=True)
        pairs.append(pair)
    make_pair("RU")
    return pairs


def answer_set(user, labels) -> None:
    for label in labels:
        lease = queue.next_lease(user, task="RU")
        assert Pair.objects.get(pk=lease.pair_id).is_qualification
        judging.judge(user, lease.id, queue.JudgementInput(choice_for(lease, label)))


def _events(action):
    return list(AuditEvent.objects.filter(action=action).values_list("target_id", "after"))


@pytest.mark.parametrize("wrong,passed", [(0, True), (1, True), (2, False)])
def test_the_assessment_comes_once_the_whole_set_is_answered_at_the_threshold(rust_set, wrong, passed):
    user = chemist()
    answer_set(user, ["other"] * wrong + ["expected"] * (4 - wrong))
    assert not Qualification.objects.filter(user=user).exists()  # 4 of 5: still pending
    answer_set(user, ["expected"])
    row = Qualification.objects.get(user=user)
    assert (row.passed, row.correct, row.answered) == (passed, 5 - wrong, 5)
    action = "qualification.passed" if passed else "qualification.failed"
    assert _events(action) == [(str(user.pk), {"task": "RU", "correct": 5 - wrong, "answered": 5})]


def test_an_undo_takes_the_assessment_back_and_the_pair_is_answered_again(rust_set):
    user = chemist()
    answer_set(user, ["expected"] * 4 + ["other"])  # 4 of 5: passed
    assert Qualification.objects.get(user=user).passed
    lease = judging.undo(user)
    assert not Qualification.objects.filter(user=user).exists()
    assert [target for target, _ in _events("qualification.withdrawn")] == [str(user.pk)]
    judging.judge(user, lease.id, queue.JudgementInput(choice_for(lease, "other")))
    assert Qualification.objects.get(user=user).correct == 4
    undone = judging.undo(user)
    judging.judge(user, undone.id, queue.JudgementInput(choice_for(undone, "expected")))
    assert Qualification.objects.get(user=user).correct == 5


def test_an_admins_decision_is_audited_and_not_reassessed(rust_set, admin_user, annotator):
    user = chemist()
    task = Task.objects.get(code="RU")
    with pytest.raises(PermissionDenied):
        qualification.decide(annotator, user, task, True)
    answer_set(user, ["other"] * 2)
    row = qualification.decide(admin_user, user, task, False)
    assert (row.passed, row.answered, row.decided_by) == (False, 2, admin_user)
    event = AuditEvent.objects.get(action="qualification.decided")
    assert (event.actor, event.target_id) == (admin_user, str(user.pk))
    assert event.before == {"task": "RU", "state": "pending"}
    assert event.after["state"] == "failed"
    assert queue.next_lease(user, task="RU") is None  # failed: nothing of RU
    qualification.decide(admin_user, user, task, True)  # after a talk: let them work
    lease = queue.next_lease(user, task="RU")
    assert not Pair.objects.get(pk=lease.pair_id).is_gold
    judging.judge(user, lease.id, queue.JudgementInput("left"))
    assert Qualification.objects.get(user=user).decided_by == admin_user  # judgements do not reassess


def test_the_gold_api_sets_and_shows_the_qualification_field(admin_user, client):
    pair = make_pair("RU")
    client.force_login(admin_user)
    made = client.post("/api/curation/gold/", {"pair": pair.id, "answer": "expected", "qualification": True})
    assert made.status_code == 201 and made.json()["qualification"] is True
    assert Pair.objects.get(pk=pair.id).is_qualification
    kept = client.post("/api/curation/gold/", {"pair": pair.id, "answer": "other"})
    assert kept.status_code == 200 and kept.json()["qualification"] is True  # absent: as it is
    out = client.post(
        "/api/curation/gold/",
        {"pair": pair.id, "answer": "other", "qualification": False},
        content_type="application/json",
    )
    assert out.json()["qualification"] is False
    listed = client.get("/api/curation/gold/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["qualification"] for row in rows] == [False]
    assert (
        client.post("/api/curation/gold/", {"pair": pair.id, "answer": "other", "qualification": "maybe"}).status_code
        == 400
    )
    assert [
        event.action for event in AuditEvent.objects.filter(action__startswith="qualification.").order_by("id")
    ] == [
        "qualification.added",
        "qualification.removed",
    ]


def test_unmarking_gold_takes_the_pair_out_of_the_set_and_assesses_who_answered_the_rest(rust_set, admin_user):
    user = chemist()
    answer_set(user, ["expected"] * 4)
    last = Pair.objects.get(is_qualification=True, judgements__isnull=True)
    gold.unmark_gold(admin_user, last.id)
    assert not Pair.objects.get(pk=last.id).is_qualification
    row = Qualification.objects.get(user=user)
    assert (row.passed, row.correct, row.answered) == (True, 4, 4)
    with pytest.raises(gold.NotGold):
        gold.set_qualification(admin_user, last.id, True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Pair.objects.filter(pk=last.id).update(is_qualification=True)  # the database refuses it too


def test_the_guide_page_adds_and_removes_pairs_and_decides(admin_user, client, annotator, reviewer):
    pair = make_pair("RU")
    gold.mark_gold(admin_user, pair.id, "both")
    other_task = make_pair("IM")
    gold.mark_gold(admin_user, other_task.id, "expected")
    client.force_login(admin_user)
    page = client.get("/curation/guides/RU/").content.decode()
    assert f"Add pair {pair.id} to the set" in page and "0</strong> pairs in the set" in page
    assert f"Add pair {other_task.id} " not in page
    response = client.post("/curation/guides/RU/qualification/", {"pair": pair.id, "on": "1"})
    assert response.status_code == 302 and response.url.endswith("/curation/guides/RU/#qualification")
    assert Pair.objects.get(pk=pair.id).is_qualification
    client.post("/curation/guides/RU/qualification/", {"pair": other_task.id, "on": "1"})  # not RU's
    assert not Pair.objects.get(pk=other_task.id).is_qualification
    for bad in ({"pair": "x", "on": "1"}, {"pair": pair.id, "on": "yes"}, {}):
        assert client.post("/curation/guides/RU/qualification/", bad).status_code == 302
    assert Pair.objects.get(pk=pair.id).is_qualification
    page = client.get("/curation/guides/RU/").content.decode()
    assert f"Remove pair {pair.id} from the set" in page and 'data-user="ann-chem" data-state="pending"' in page
    assert client.post(f"/curation/guides/RU/qualification/{annotator.pk}/", {"passed": "1"}).status_code == 302
    assert Qualification.objects.get(user=annotator).passed
    assert 'data-user="ann-chem" data-state="passed"' in client.get("/curation/guides/RU/").content.decode()
    assert client.post(f"/curation/guides/RU/qualification/{reviewer.pk}/", {"passed": "1"}).status_code == 404
    assert client.post("/curation/guides/RU/qualification/999999/", {"passed": "1"}).status_code == 404
    client.post(f"/curation/guides/RU/qualification/{annotator.pk}/", {"passed": "maybe"})
    assert Qualification.objects.get(user=annotator).passed
    client.post("/curation/guides/RU/qualification/", {"pair": pair.id, "on": "0"})
    assert not Pair.objects.get(pk=pair.id).is_qualification

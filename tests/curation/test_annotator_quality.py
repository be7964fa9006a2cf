"""Annotator quality from gold judgements: counters, flagging and pausing, restore, undo, the
quality API and the admin action (curation.services.gold)."""

import pytest

from annotation.models import AuditEvent, Expertise
from annotation.services import queue
from curation.models import AnnotatorQuality
from curation.services import gold, judging
from tests.support.audit import events
from tests.support.factories import make_pair
from tests.support.judging import chemist, judge

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _gold_settings(settings):
    settings.GOLD_RATE = 1
    settings.GOLD_MIN_ITEMS = 3
    settings.GOLD_MIN_ACCURACY = 0.7


@pytest.fixture
def golds(admin_user):
    """Make ``n`` new gold pairs with ``answer``."""

    def make(n: int, answer: str = "expected"):
        pairs = [make_pair("RU") for _ in range(n)]
        for pair in pairs:
            gold.mark_gold(admin_user, pair.id, answer)
        return pairs

    return make


def judge_gold(user, label: str):
    """``user`` judges the next gold pair (any of them) with ``label``."""
    pair = queue.next_lease(user).pair
    assert pair.is_gold
    return judge(user, pair, label)


def quality_of(user) -> AnnotatorQuality:
    return AnnotatorQuality.objects.get(user=user)


def paused(user) -> bool:
    return Expertise.objects.get(user=user).paused


@pytest.mark.parametrize(
    ("answer", "label", "correct"),
    [
        ("expected", "expected", 1),
        ("expected", "other", 0),
        ("other", "other", 1),
        ("other", "expected", 0),
        ("both", "both", 1),
        ("both", "neither", 0),
        ("neither", "neither", 1),
        ("neither", "expected", 0),
    ],
)
def test_it_compares_a_gold_judgement_with_the_answer(golds, annotator, answer, label, correct):
    golds(1, answer)
    judge_gold(annotator, label)
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct) == (1, correct)


def test_it_counts_only_gold_judgements_and_audits_each_change(golds, annotator, settings):
    golds(2)
    settings.GOLD_RATE = 0
    make_pair("RU")
    lease = queue.next_lease(annotator)
    assert not lease.pair.is_gold
    judging.judge(annotator, lease.id, queue.JudgementInput("left"))
    assert not AnnotatorQuality.objects.filter(user=annotator).exists()
    judge_gold(annotator, "expected")
    judge_gold(annotator, "other")
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct, quality.gold_accuracy) == (2, 1, 0.5)
    assert [(e.before, e.after) for e in reversed(events("quality.updated", annotator))] == [
        ({"gold_judged": 0, "gold_correct": 0}, {"gold_judged": 1, "gold_correct": 1}),
        ({"gold_judged": 1, "gold_correct": 1}, {"gold_judged": 2, "gold_correct": 1}),
    ]


def test_it_does_not_count_judgements_made_before_the_pair_was_marked(admin_user, annotator, settings):
    settings.GOLD_RATE = 0
    pair = make_pair("RU")
    judge(annotator, pair, "other")
    gold.mark_gold(admin_user, pair.id, "expected")
    assert not AnnotatorQuality.objects.filter(user=annotator).exists()


def test_it_waits_for_the_minimum_number_of_gold_judgements(golds, annotator):
    golds(3)
    judge_gold(annotator, "other")
    judge_gold(annotator, "other")
    assert not quality_of(annotator).flagged and not paused(annotator)


def test_it_flags_and_pauses_an_annotator_below_the_threshold(api, golds, annotator):
    golds(4)
    for label in ("expected", "expected", "other"):  # 2/3 < 0.7
        judge_gold(annotator, label)
    quality = quality_of(annotator)
    assert quality.flagged and quality.flagged_at is not None and paused(annotator)
    [event] = events("annotator.flagged", annotator)
    assert event.before == {"gold_judged": 3, "gold_correct": 2, "flagged": False, "paused": False}
    assert event.after == {"gold_judged": 3, "gold_correct": 2, "flagged": True, "paused": True}
    api.force_authenticate(annotator)
    response = api.post("/api/queue/next/")
    assert response.status_code == 403 and response.json()["code"] == "paused"


def test_it_leaves_an_annotator_at_the_threshold_alone(golds, annotator, settings):
    settings.GOLD_MIN_ACCURACY = 2 / 3
    golds(3)
    for label in ("expected", "expected", "other"):
        judge_gold(annotator, label)
    assert not quality_of(annotator).flagged


def test_it_restores_an_annotator_whose_old_results_do_not_flag_them_again(api, admin_user, golds, annotator):
    golds(6)
    for label in ("other", "other", "other"):
        judge_gold(annotator, label)
    assert paused(annotator)
    api.force_authenticate(admin_user)
    response = api.post(f"/api/curation/quality/{annotator.id}/restore/")
    assert response.status_code == 200
    body = response.json()
    assert (body["flagged"], body["paused"], body["gold_judged"], body["restored_by"]) == (False, False, 0, "boss")
    assert not paused(annotator)
    [event] = events("annotator.restored", annotator)
    assert event.actor == admin_user and event.before["flagged"] and not event.after["paused"]
    judge_gold(annotator, "other")  # one wrong answer in the fresh period: too few to assess
    judge_gold(annotator, "expected")
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct, quality.flagged) == (2, 1, False)
    assert queue.next_lease(annotator) is not None


def test_it_flags_a_restored_annotator_again_on_new_results(admin_user, golds, annotator):
    golds(6)
    for _ in range(3):
        judge_gold(annotator, "other")
    gold.restore(admin_user, annotator)
    for _ in range(3):
        judge_gold(annotator, "neither")
    assert quality_of(annotator).flagged and paused(annotator)
    assert len(events("annotator.flagged", annotator)) == 2


def test_it_treats_restoring_an_unflagged_annotator_as_a_no_op(admin_user, annotator):
    quality = gold.restore(admin_user, annotator)
    assert quality.restored_at is None and not events("annotator.restored", annotator)


def test_it_recomputes_quality_when_a_gold_judgement_is_undone(golds, annotator):
    golds(1)
    judge_gold(annotator, "expected")
    assert quality_of(annotator).gold_correct == 1
    lease = judging.undo(annotator)
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct) == (0, 0)
    assert events("quality.updated", annotator)[0].after == {"gold_judged": 0, "gold_correct": 0}
    choice = "right" if lease.left_image_id == lease.pair.image_correct_id else "left"  # now the other image
    judging.judge(annotator, lease.id, queue.JudgementInput(choice))
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct) == (1, 0)


def test_it_assesses_on_added_gold_judgements_not_on_an_undo(golds, annotator, settings):
    golds(4)
    settings.GOLD_MIN_ITEMS = 10
    for label in ("other", "expected", "expected", "expected"):
        judge_gold(annotator, label)
    settings.GOLD_MIN_ITEMS = 3
    lease = judging.undo(annotator)  # 2 of 3 left: below 0.7, but an undo only recounts
    quality = quality_of(annotator)
    assert (quality.gold_judged, quality.gold_correct, quality.flagged) == (3, 2, False)
    assert not paused(annotator)
    judging.judge(annotator, lease.id, queue.JudgementInput("neither"))  # 2 of 4
    assert quality_of(annotator).flagged and paused(annotator)


def test_it_recomputes_everyone_when_an_answer_changes_or_a_pair_is_unmarked(admin_user, golds):
    [pair] = golds(1, "expected")
    right, wrong = chemist(), chemist()
    judge_gold(right, "expected")
    judge_gold(wrong, "other")
    gold.mark_gold(admin_user, pair.id, "other")
    assert (quality_of(right).gold_correct, quality_of(wrong).gold_correct) == (0, 1)
    assert events("quality.updated", right)[0].actor == admin_user
    gold.unmark_gold(admin_user, pair.id)
    assert (quality_of(right).gold_judged, quality_of(wrong).gold_judged) == (0, 0)


def test_it_lists_quality_for_admins_only(api, admin_user, reviewer, golds, annotator):
    golds(4)
    for _ in range(3):
        judge_gold(annotator, "other")
    other = chemist()
    judge_gold(other, "expected")
    api.force_authenticate(admin_user)
    rows = api.get("/api/curation/quality/").json()["results"]
    assert {
        row["username"]: (row["gold_judged"], row["gold_correct"], row["accuracy"], row["flagged"], row["paused"])
        for row in rows
    } == {annotator.username: (3, 0, 0.0, True, True), other.username: (1, 1, 1.0, False, False)}
    assert [row["user_id"] for row in api.get("/api/curation/quality/?flagged=true").json()["results"]] == [
        annotator.id
    ]
    assert api.get("/api/curation/quality/?flagged=maybe").status_code == 400
    for user in (reviewer, annotator):
        api.force_authenticate(user)
        assert api.get("/api/curation/quality/").status_code == 403
        assert api.post(f"/api/curation/quality/{annotator.id}/restore/").status_code == 403
    assert paused(annotator)


def test_it_answers_404_when_restoring_an_unknown_user(api, admin_user):
    api.force_authenticate(admin_user)
    assert api.post("/api/curation/quality/999999/restore/").status_code == 404


def test_it_restores_flagged_annotators_from_the_django_admin(client, admin_user, golds, annotator):
    golds(3)
    for _ in range(3):
        judge_gold(annotator, "both")
    client.force_login(admin_user)
    response = client.post(
        "/admin/curation/annotatorquality/", {"action": "restore", "_selected_action": [quality_of(annotator).pk]}
    )
    assert response.status_code == 302
    assert not quality_of(annotator).flagged and not paused(annotator)
    assert AuditEvent.objects.filter(action="annotator.restored", actor=admin_user).count() == 1

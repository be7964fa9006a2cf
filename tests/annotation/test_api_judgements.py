"""/api/judgements/: annotators see only their own, blind; reviewers see all, with the chosen image."""

import pytest

from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_pair, make_user

BLIND_FIELDS = {
    "id",
    "pair",
    "choice",
    "flag_prompt_unclear",
    "flag_image_broken",
    "flag_off_topic",
    "comment",
    "time_spent_ms",
    "confidence",
    "reasons",
    "created_at",
}


def judge(user, choice, **extra):
    lease = queue.next_lease(user)
    return judging.judge(user, lease.id, queue.JudgementInput(choice=choice, **extra))[0]


@pytest.fixture
def judged(annotator):
    """One pair judged by two chemists: `annotator` picks the expected image, the other picks neither."""
    pair = make_pair("RU")
    lease = queue.next_lease(annotator)
    expected_side = "left" if lease.left_image_id == pair.image_correct_id else "right"  # sides are random
    own, _ = judging.judge(
        annotator, lease.id, queue.JudgementInput(choice=expected_side, comment="clearly rusty", time_spent_ms=1200)
    )
    other = judge(make_user("ann-chem-2", "annotator", disciplines=["chemistry"]), "neither", flag_prompt_unclear=True)
    return {"pair": pair, "own": own, "other": other}


def test_it_shows_an_annotator_only_their_own_judgements_without_the_chosen_image(api, annotator, judged):
    api.force_authenticate(annotator)
    body = api.get("/api/judgements/").json()
    assert [j["id"] for j in body["results"]] == [judged["own"].id]
    row = body["results"][0]
    assert set(row) == BLIND_FIELDS
    assert (row["pair"], row["comment"], row["time_spent_ms"]) == (judged["pair"].id, "clearly rusty", 1200)


def test_it_hides_other_judgements_from_an_annotator_even_by_id_or_filter(api, annotator, judged):
    api.force_authenticate(annotator)
    assert api.get(f"/api/judgements/{judged['other'].id}/").status_code == 404
    assert api.get("/api/judgements/?annotator=ann-chem-2").json()["count"] == 0
    own = api.get(f"/api/judgements/{judged['own'].id}/").json()
    assert set(own) == BLIND_FIELDS


def test_it_shows_reviewers_everything_with_agreement(api, reviewer, judged):
    api.force_authenticate(reviewer)
    rows = {j["id"]: j for j in api.get("/api/judgements/").json()["results"]}
    own, other = rows[judged["own"].id], rows[judged["other"].id]
    assert (own["annotator"], own["chosen_image"], own["agrees_with_expected"]) == (
        "ann-chem",
        judged["pair"].image_correct_id,
        True,
    )
    assert (other["annotator"], other["chosen_image"], other["agrees_with_expected"]) == ("ann-chem-2", None, None)
    assert other["flag_prompt_unclear"] is True


def test_it_filters_judgements_by_pair_and_annotator_for_reviewers(api, reviewer, judged):
    other_pair = make_pair("RU")
    api.force_authenticate(reviewer)
    assert api.get(f"/api/judgements/?pair={judged['pair'].id}").json()["count"] == 2
    assert api.get(f"/api/judgements/?pair={other_pair.id}").json()["count"] == 0
    rows = api.get("/api/judgements/?annotator=ann-chem-2").json()["results"]
    assert [j["id"] for j in rows] == [judged["other"].id]


def test_it_refuses_a_malformed_pair_filter(api, reviewer):
    api.force_authenticate(reviewer)
    assert api.get("/api/judgements/?pair=first").status_code == 400


def test_it_shows_a_user_with_no_judgements_an_empty_list(api, outsider, judged):
    api.force_authenticate(outsider)
    assert api.get("/api/judgements/").json()["count"] == 0

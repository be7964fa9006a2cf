"""Session feedback: after an annotator ends a session they see their attention-check (gold) results, which
pairs were checks and whether each was right — never before the session ends, never the answer, and the
session's judgements can no longer be undone."""

import pytest
from django.urls import reverse

from annotation.models import Judgement, Lease, Pair
from annotation.services import queue, sessions
from curation.services import gold, judging
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db


def judge(user, *, pick: str) -> Judgement:
    lease = queue.next_lease(user, task="RU")
    pair = Pair.objects.get(pk=lease.pair_id)
    wanted = pair.image_correct_id if pick == "expected" else pair.image_wrong_id
    choice = "left" if lease.left_image_id == wanted else "right"
    return judging.judge(user, lease.id, queue.JudgementInput(choice=choice))[0]


@pytest.fixture
def session(annotator, admin_user, settings):
    """Two gold pairs (one answered right, one wrong) and one normal pair, judged in this order."""
    settings.GOLD_RATE = 1.0  # gold first while there is any
    right, wrong = make_pair("RU"), make_pair("RU")
    for pair in (right, wrong):
        gold.mark_gold(admin_user, pair.pk, "expected")
    make_pair("RU")
    made = [judge(annotator, pick="expected"), judge(annotator, pick="other"), judge(annotator, pick="expected")]
    return {"gold": {right.pk, wrong.pk}, "judgements": made}


def test_nothing_is_revealed_before_the_session_ends(client, annotator, session):
    client.force_login(annotator)
    html = client.get(reverse("curation:session-reports")).content.decode()
    assert 'id="sessions-empty"' in html and "right" not in html.split("<main", 1)[1].split("sessions-empty")[0]


def test_ending_a_session_reports_its_attention_checks_without_the_answers(client, annotator, session):
    client.force_login(annotator)
    response = client.post(reverse("curation:session-end"))
    assert response.status_code == 302 and response["Location"] == reverse("curation:session-reports")
    html = client.get(reverse("curation:session-reports")).content.decode()
    latest = html[html.index('id="latest-session"') :]
    assert "You judged <strong>3</strong> pairs" in latest
    assert "Attention checks: <strong>1 of 2</strong> right (50%)" in latest
    assert latest.count('class="check-right"') == 1 and latest.count('class="check-wrong"') == 1
    for hidden in ("expected", "answer", "image_correct"):
        assert hidden not in latest


def test_an_ended_sessions_judgements_cannot_be_undone(annotator, session):
    judging.undo(annotator)  # inside the session: fine, and it leases the pair again
    judge(annotator, pick="expected")
    sessions.end_session(annotator)
    with pytest.raises(queue.NothingToUndo):
        judging.undo(annotator)
    with pytest.raises(queue.NothingToUndo):
        judging.undo(annotator, session["judgements"][0].pk)


def test_ending_a_session_releases_the_live_lease_and_a_new_session_starts(annotator, session):
    make_pair("RU")
    lease = queue.next_lease(annotator)
    end = sessions.end_session(annotator)
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.RELEASED
    judge(annotator, pick="expected")
    later = sessions.end_session(annotator)
    (second_start, second_end), (first_start, first_end) = sessions.ended_sessions(annotator)
    assert (first_start, first_end, second_start, second_end) == (None, end, end, later)
    assert gold.session_report(annotator, second_start, second_end)["judged"] == 1


def test_only_annotators_have_sessions(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("curation:session-reports")).status_code == 403
    assert client.post(reverse("curation:session-end")).status_code == 403

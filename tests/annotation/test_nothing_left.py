"""What an annotator is told when nothing is left for them (issue 16: the page said every pair "has enough
judgements" while pairs still waited for others, and the home page offered "Start annotating")."""

import pytest

from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def test_the_home_page_offers_annotating_only_while_something_is_left(client):
    pair = make_pair("RU", k=3)
    user = make_user("left-or-not", disciplines=["chemistry"])
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'id="start-annotating"' in page and 'id="nothing-left"' not in page
    judging.judge(user, queue.next_lease(user).id, queue.JudgementInput("left"))
    assert pair.judgements.count() == 1  # the pair still waits for two other annotators
    page = client.get("/").content.decode()
    assert 'id="start-annotating"' not in page and 'id="nothing-left"' in page
    assert "waits for other annotators" in page


def test_the_annotate_page_says_what_is_true_when_the_queue_is_empty(client):
    client.force_login(make_user("empty-queue", disciplines=["chemistry"]))
    page = client.get("/annotate/").content.decode()
    assert "has enough judgements" not in page
    assert "Nothing left for you right now" in page and "has yours, or is held by another annotator" in page

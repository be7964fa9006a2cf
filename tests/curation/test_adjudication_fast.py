"""The fast adjudication page's data (issue 16): the JSON the page's script reads for the next pair, the flagged
review list, and the flags and comments the page shows at its top."""

import re

import pytest
from django.urls import reverse

from curation.models import Adjudication
from curation.services import adjudication
from tests.support.judging import chemist, judge, judged_pair

pytestmark = pytest.mark.django_db


def data_url(pair) -> str:
    return reverse("curation:adjudication-data", args=[pair.pk])


@pytest.fixture
def queue_items():
    """Oldest first: a reversed pair, a disputed pair; a confirmed pair with a flagged judgement."""
    items = {
        "reversed": judged_pair("other", "other", "expected"),
        "disputed": judged_pair("neither", "other", "both"),
    }
    confirmed = judged_pair("expected", "expected")
    judge(chemist(), confirmed, "expected", flag_image_broken=True, comment="The right image is cut off.")
    items["flagged_confirmed"] = confirmed
    return items


def test_the_data_of_a_pair_names_its_images_labels_and_the_next_pair_of_the_same_list(client, reviewer, queue_items):
    client.force_login(reviewer)
    first, second = queue_items["reversed"], queue_items["disputed"]
    data = client.get(data_url(first)).json()
    assert data["pair"] == first.pk and data["next"] == second.pk
    assert data["images"] == {
        "expected": reverse("image-file", args=[first.image_correct_id]),
        "other": reverse("image-file", args=[first.image_wrong_id]),
    }
    assert sorted(j["label"] for j in data["judgements"]) == ["expected", "other", "other"]
    assert data["consensus"]["outcome"] == "reversed"
    assert data["prompts"]["implicit"] == first.tuple.implicit_prompt
    assert client.get(data_url(second)).json()["next"] == first.pk  # wraps around
    flagged = client.get(data_url(first), {"flagged": "on"}).json()
    assert flagged["next"] == queue_items["flagged_confirmed"].pk  # the flagged list is another list


def test_the_data_refuses_annotators_and_answers_404_and_400_not_500(client, annotator, reviewer, queue_items):
    pair = queue_items["reversed"]
    client.force_login(annotator)
    assert client.get(data_url(pair)).status_code == 403
    client.force_login(reviewer)
    assert client.get(reverse("curation:adjudication-data", args=[999999])).status_code == 404
    assert client.get(data_url(pair), {"outcome": "confirmed"}).status_code == 400
    assert client.get(data_url(pair), {"task": "x" * 33}).status_code == 400
    assert client.get(data_url(pair), {"task": "R\x00U"}).status_code == 400
    assert client.get(data_url(pair), {"flagged": "maybe"}).status_code == 400


def test_a_flagged_pair_waits_until_a_reviewer_decides_it(reviewer, queue_items):
    confirmed = queue_items["flagged_confirmed"]
    assert [c.pair_id for c in adjudication.review_queue(flagged=True)] == [confirmed.pk]
    assert adjudication.flagged_waiting() == 1
    adjudication.adjudicate(reviewer, confirmed.pk, "expected")
    assert list(adjudication.review_queue(flagged=True)) == []
    assert adjudication.flagged_waiting() == 0
    assert [a.pair_id for a in adjudication.recent_decisions()] == [confirmed.pk]


def test_the_list_offers_the_flagged_pairs_and_counts_them(client, reviewer, queue_items):
    client.force_login(reviewer)
    list_url = reverse("curation:adjudication-list")
    html = client.get(list_url).content.decode()
    assert re.search(r'id="total-flagged">1<', html)
    listed = re.findall(r'<tr data-pair="(\d+)">', client.get(list_url, {"flagged": "on"}).content.decode())
    assert listed == [str(queue_items["flagged_confirmed"].pk)]


def test_the_page_shows_flags_and_comments_at_the_top_and_the_script_its_next_pair(client, reviewer, queue_items):
    client.force_login(reviewer)
    pair = queue_items["flagged_confirmed"]
    html = client.get(reverse("curation:adjudication-detail", args=[pair.pk]), {"flagged": "on"}).content.decode()
    top = html[: html.index('id="compare"')]
    assert "image broken ×1" in top and "The right image is cut off." in top
    assert '"next": null' in html  # alone in its list
    assert 'src="/static/js/adjudicate.js"' in html
    assert not Adjudication.objects.exists()

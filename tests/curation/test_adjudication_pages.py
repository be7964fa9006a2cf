"""The reviewer's adjudication pages under /curation/adjudication/."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from curation.models import Adjudication, Consensus
from tests.support.judging import judged_pair

pytestmark = pytest.mark.django_db

LIST = reverse("curation:adjudication-list")


def detail(pair) -> str:
    return reverse("curation:adjudication-detail", args=[pair.pk])


def listed(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-pair="(\d+)">', response.content.decode())]


@pytest.fixture
def queue_items():
    """Oldest first: a reversed RU pair, a disputed IM pair, a disputed RU pair; plus pairs not listed."""
    items = {
        "reversed": judged_pair("other", "other", "expected"),
        "disputed_im": judged_pair("expected", "other", "both", task="IM"),
        "disputed_ru": judged_pair("neither", "other", "both"),
    }
    judged_pair("expected", "expected", "expected")  # confirmed
    judged_pair("other")  # pending
    return items


def test_it_sends_anonymous_users_to_the_login_page(client, queue_items):
    for url in (LIST, detail(queue_items["reversed"])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_it_refuses_annotators(client, annotator, queue_items):
    client.force_login(annotator)
    assert client.get(LIST).status_code == 403
    assert client.get(detail(queue_items["reversed"])).status_code == 403
    assert client.post(detail(queue_items["reversed"]), {"label": "other"}).status_code == 403
    assert not Adjudication.objects.exists()


def test_it_lists_disputed_and_reversed_pairs_oldest_first_with_filters(client, reviewer, queue_items):
    client.force_login(reviewer)
    response = client.get(LIST)
    assert listed(response) == [p.pk for p in queue_items.values()]
    assert response.context["totals"] == {"disputed": 2, "reversed": 1}
    assert listed(client.get(LIST, {"outcome": "disputed"})) == [
        queue_items["disputed_im"].pk,
        queue_items["disputed_ru"].pk,
    ]
    assert listed(client.get(LIST, {"task": "IM"})) == [queue_items["disputed_im"].pk]
    assert f'href="{detail(queue_items["disputed_im"])}?task=IM"' in client.get(LIST, {"task": "IM"}).content.decode()


def test_it_lists_with_a_fixed_number_of_queries(client, reviewer, django_assert_max_num_queries):
    client.force_login(reviewer)
    for _ in range(2):
        judged_pair("expected", "other", "both")
    with django_assert_max_num_queries(9) as few:
        assert len(listed(client.get(LIST))) == 2
    for _ in range(6):
        judged_pair("other", "other", "neither")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(listed(client.get(LIST))) == 8


def test_it_shows_reviewers_the_whole_tuple_images_and_judgements(client, reviewer, queue_items):
    pair = queue_items["reversed"]
    client.force_login(reviewer)
    html = client.get(detail(pair)).content.decode()
    prompts = pair.tuple
    for text in (prompts.implicit_prompt, prompts.explicit_prompt, prompts.superficial_prompt, "RU", "Chemistry"):
        assert text in html
    for annotator in pair.judgements.values_list("annotator__username", flat=True):
        assert f'<td class="annotator">{annotator}</td>' in html
    assert sorted(re.findall(r'<td class="label">(\w+)</td>', html)) == ["expected", "other", "other"]
    expected = re.search(r'id="image-expected">.*?src="([^"]+)"', html, re.S).group(1)
    other = re.search(r'id="image-other">.*?src="([^"]+)"', html, re.S).group(1)
    assert (expected, other) == (
        f"/api/images/{pair.image_correct_id}/file/",
        f"/api/images/{pair.image_wrong_id}/file/",
    )
    assert client.get(expected).status_code == 200
    assert "<strong>reversed</strong>" in html


def test_it_records_the_decision_and_moves_to_the_next_pair_in_the_list(client, reviewer, queue_items):
    client.force_login(reviewer)
    first, second, third = queue_items.values()
    response = client.post(detail(second), {"label": "expected", "comment": "Rust needs oxygen."})
    assert response.status_code == 302 and response["Location"] == detail(third)
    decision = Adjudication.objects.get(pair=second)
    assert (decision.reviewer, decision.label, decision.comment) == (reviewer, "expected", "Rust needs oxygen.")
    assert Consensus.objects.get(pair=second).outcome == "adjudicated"
    assert client.post(detail(third), {"label": "neither"})["Location"] == detail(first)  # wraps around
    assert client.post(detail(first), {"label": "other"})["Location"] == LIST  # nothing left
    assert listed(client.get(LIST)) == []
    assert "Previous adjudications" in client.get(detail(first)).content.decode()


def test_it_keeps_the_filters_when_moving_on(client, reviewer, queue_items):
    client.force_login(reviewer)
    url = f"{detail(queue_items['reversed'])}?task=RU"
    assert client.post(url, {"label": "other"})["Location"] == f"{detail(queue_items['disputed_ru'])}?task=RU"


def test_it_shows_form_errors_and_records_nothing_for_a_bad_label(client, reviewer, queue_items):
    client.force_login(reviewer)
    response = client.post(detail(queue_items["reversed"]), {"label": "left"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Adjudication.objects.exists()


def test_it_needs_the_csrf_token(reviewer, queue_items):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(reviewer)
    assert strict.post(detail(queue_items["reversed"]), {"label": "other"}).status_code == 403
    assert not Adjudication.objects.exists()

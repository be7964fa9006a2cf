"""The pair gallery (/curation/pairs/): thumbnails of pairs with filters, for reviewers and admins only."""

import re

import pytest
from django.urls import reverse

from tests.support.factories import make_pair
from tests.support.judging import chemist, judge, judged_pair

pytestmark = pytest.mark.django_db

GALLERY = reverse("curation:gallery")


def shown(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-pair="(\d+)"', response.content.decode())]


@pytest.fixture
def pairs():
    reversed_ = judged_pair("other", "other", "expected")
    confirmed = judged_pair("expected", "expected")
    judge(chemist(), confirmed, "expected", flag_off_topic=True)
    return {"reversed": reversed_, "confirmed": confirmed, "fresh": make_pair("RU"), "bio": make_pair("LR")}


def test_it_shows_every_pair_newest_first_with_lazy_thumbnails_of_both_images(client, reviewer, pairs):
    client.force_login(reviewer)
    response = client.get(GALLERY)
    assert shown(response) == sorted((p.pk for p in pairs.values()), reverse=True)
    html = response.content.decode()
    fresh = pairs["fresh"]
    for image in (fresh.image_correct_id, fresh.image_wrong_id):
        assert re.search(rf'<img src="{reverse("image-file", args=[image])}"[^>]*loading="lazy" width="160"', html)
    assert reverse("curation:adjudication-detail", args=[fresh.pk]) in html
    assert "/ml/images/" not in html  # the origin page is the admins'


def test_it_filters_by_task_discipline_outcome_and_flags(client, reviewer, pairs):
    client.force_login(reviewer)
    assert shown(client.get(GALLERY, {"task": "LR"})) == [pairs["bio"].pk]
    assert pairs["bio"].pk not in shown(client.get(GALLERY, {"discipline": "chemistry"}))
    assert shown(client.get(GALLERY, {"outcome": "reversed"})) == [pairs["reversed"].pk]
    assert set(shown(client.get(GALLERY, {"outcome": "pending"}))) == {pairs["fresh"].pk, pairs["bio"].pk}
    assert shown(client.get(GALLERY, {"flagged": "on"})) == [pairs["confirmed"].pk]
    bad = client.get(GALLERY, {"outcome": "nonsense", "task": "RU", "page": "x"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()


def test_it_pages_the_pairs(client, reviewer, pairs, monkeypatch):
    from curation import views_gallery

    monkeypatch.setattr(views_gallery, "PAGE_SIZE", 3)
    client.force_login(reviewer)
    first, second = client.get(GALLERY), client.get(GALLERY, {"page": 2})
    assert len(shown(first)) == 3 and len(shown(second)) == 1
    assert set(shown(first)) | set(shown(second)) == {p.pk for p in pairs.values()}


def test_admins_get_the_origin_links_and_annotators_nothing(client, annotator, admin_user, pairs):
    client.force_login(annotator)
    assert client.get(GALLERY).status_code == 403
    client.force_login(admin_user)
    html = client.get(GALLERY).content.decode()
    assert reverse("ml:image-origin", args=[pairs["fresh"].image_correct_id]) in html


def test_it_needs_a_fixed_number_of_queries(client, reviewer, django_assert_max_num_queries):
    client.force_login(reviewer)
    judged_pair("other", "other", "expected")
    with django_assert_max_num_queries(12) as few:
        client.get(GALLERY)
    for _ in range(4):
        make_pair("RU")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(shown(client.get(GALLERY))) == 5

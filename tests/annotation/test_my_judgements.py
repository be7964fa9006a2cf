"""The annotator's recent judgements page, undo of one judgement by id, and the progress figures."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Judgement
from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def judge_next(user, choice="left", **extra) -> Judgement:
    lease = queue.next_lease(user, task="RU")
    return judging.judge(user, lease.id, queue.JudgementInput(choice=choice, **extra))[0]


def test_it_lists_only_my_judgements_newest_first_as_i_saw_them(client, annotator):
    for _ in range(3):
        make_pair("RU")
    first = judge_next(annotator, "left", comment="brown flakes", flag_off_topic=True)
    second = judge_next(annotator, "neither", confidence="unsure")
    peer = make_user("ann-chem-2", "annotator", disciplines=["chemistry"])
    theirs = judge_next(peer, "right", comment="PEER SECRET")
    client.force_login(annotator)
    html = client.get(reverse("my-judgements")).content.decode()
    assert html.index(f'data-judgement="{second.pk}"') < html.index(f'data-judgement="{first.pk}"')
    assert f'data-judgement="{theirs.pk}"' not in html and "PEER SECRET" not in html
    assert reverse("lease-image", args=[first.lease_id, "left"]) in html  # the images as shown to me
    assert "brown flakes" in html and "off-topic" in html and "unsure" in html
    for hidden in ("expected", "consensus", "gold", "image_correct", "agrees"):
        assert hidden not in html.lower()


def test_undo_is_offered_inside_the_window_only(client, annotator):
    make_pair("RU")
    make_pair("RU")
    old = judge_next(annotator)
    Judgement.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    recent = judge_next(annotator)
    client.force_login(annotator)
    html = client.get(reverse("my-judgements")).content.decode()
    assert f'class="undo-form" data-judgement="{recent.pk}"' in html
    assert f'class="undo-form" data-judgement="{old.pk}"' not in html


def test_undo_by_id_takes_back_that_judgement_not_the_latest(api, annotator):
    make_pair("RU")
    make_pair("RU")
    older, newer = judge_next(annotator), judge_next(annotator)
    api.force_authenticate(annotator)
    response = api.post(reverse("judgement-undo"), {"judgement_id": older.pk}, format="json")
    assert response.status_code == 200 and response.data["pair_id"] == older.pair_id
    assert list(Judgement.objects.filter(annotator=annotator)) == [newer]


def test_the_page_paginates(client, annotator):
    for _ in range(21):
        make_pair("RU")
        judge_next(annotator)
    client.force_login(annotator)
    first = client.get(reverse("my-judgements")).content.decode()
    second = client.get(reverse("my-judgements") + "?page=2").content.decode()
    assert first.count('class="my-judgement"') == 20 and second.count('class="my-judgement"') == 1
    assert client.get(reverse("my-judgements") + "?page=abc").status_code == 200


def test_progress_counts_today_and_whats_left(api, annotator, settings):
    for _ in range(3):
        make_pair("RU")
    judge_next(annotator)
    yesterday = judge_next(annotator)
    Judgement.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=2))
    api.force_authenticate(annotator)
    response = api.get(reverse("my-progress"))
    assert response.status_code == 200 and response.data == {"judged_today": 1, "left": 1}


def test_the_annotate_page_renders_the_progress_line(client, annotator):
    make_pair("RU")
    client.force_login(annotator)
    html = client.get(reverse("annotate")).content.decode()
    assert '<strong id="judged-today">0</strong> judged today' in html
    assert 'about <strong id="left-for-you">1</strong> left for you' in html

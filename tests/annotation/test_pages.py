"""The server-rendered pages: login, home (progress figures) and the annotate shell."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Judgement
from annotation.services import catalog, queue
from curation.services import judging
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def judge_next(user, task: str) -> Judgement:
    lease = queue.next_lease(user, task=task)
    judgement, _ = judging.judge(user, lease.id, queue.JudgementInput(choice="left"))
    return judgement


@pytest.mark.parametrize("name", ["home", "annotate"])
def test_it_redirects_anonymous_users_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={reverse(name)}"


def test_it_logs_in_and_lands_on_home(client, annotator):
    response = client.post(reverse("login"), {"username": "ann-chem", "password": "pw-for-tests-1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_it_shows_an_error_for_a_wrong_password(client, annotator):
    response = client.post(reverse("login"), {"username": "ann-chem", "password": "wrong"})
    assert response.status_code == 200
    assert b"didn't match" in response.content
    assert "_auth_user_id" not in client.session


def test_it_logs_out_by_post(client, annotator):
    client.force_login(annotator)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_it_shows_the_annotator_their_progress(client, annotator, django_assert_max_num_queries):
    other = make_user("ann-chem-2", "annotator", disciplines=["chemistry"])
    make_pair("RU", k=1)
    judge_next(other, "RU")  # now complete: no longer left for anyone
    make_pair("RU")
    old = judge_next(annotator, "RU")
    Judgement.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    for _ in range(3):
        make_pair("RU")
    catalog.set_pair_retired(make_pair("RU").id, True)
    make_pair("IM")
    make_pair("RI")  # biology: outside this annotator's expertise
    judge_next(annotator, "IM")

    client.force_login(annotator)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("home"))

    stats = response.context["stats"]
    assert (stats.pairs_left, stats.judged_today, stats.judged_total) == (3, 1, 2)
    rows = {row.task.code: (row.judged, row.left, row.total) for row in stats.tasks}
    assert rows == {"RU": (1, 3, 4), "IM": (1, 0, 1), "FR": (0, 0, 0)}
    html = response.content.decode()
    assert 'id="pairs-left">3<' in html
    assert 'id="judged-today">1<' in html
    assert "Start annotating" in html
    assert "no pairs yet" in html  # FR has no pairs at all: no misleading 100 % bar
    assert f"{reverse('annotate')}?task=RU" in html


def test_it_shows_reviewers_their_links_instead(client, reviewer):
    client.force_login(reviewer)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert "stats" not in response.context
    assert reverse("api-docs").encode() in response.content
    assert b"Start annotating" not in response.content


def test_it_links_admins_to_the_admin_site(client, admin_user):
    client.force_login(admin_user)
    assert reverse("admin:index").encode() in client.get(reverse("home")).content


@pytest.mark.parametrize("persona", ["reviewer", "admin_user"])
def test_it_forbids_the_annotate_page_to_non_annotators(client, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("annotate")).status_code == 403


def test_it_serves_the_annotate_shell_with_endpoints_and_filters(client, annotator):
    client.force_login(annotator)
    response = client.get(reverse("annotate"), {"task": "RU"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="csrf-token"' in html
    assert '"judgement": "/api/leases/{id}/judgement/"' in html
    assert '"task": "RU"' in html
    for element_id in ("prompt", "img-left", "img-right", "empty-state", "status"):
        assert f'id="{element_id}"' in html

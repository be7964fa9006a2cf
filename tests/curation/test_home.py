"""The home page per role (config/home.py): annotators keep their page, reviewers and admins get their work."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from curation.models import Job
from curation.services import adjudication
from tests.support.factories import make_pair, make_user
from tests.support.judging import judged_pair

pytestmark = pytest.mark.django_db

HOME = reverse("home")


def test_an_annotator_gets_the_annotators_home(client, annotator):
    make_pair("RU")
    client.force_login(annotator)
    response = client.get(HOME)
    assert [t.name for t in response.templates][0] == "annotation/home.html"
    assert 'id="start-annotating"' in response.content.decode()


def test_a_reviewer_sees_what_waits_and_the_latest_decisions(client, reviewer):
    judged_pair("other", "other", "expected")  # reversed
    disputed = judged_pair("neither", "other", "both")
    judged_pair("expected", "other", "both")  # disputed
    adjudication.adjudicate(reviewer, disputed.pk, "both", "Both show rust.")
    client.force_login(reviewer)
    response = client.get(HOME)
    html = response.content.decode()
    assert response.templates[0].name == "home_staff.html"
    assert 'id="waiting-disputed">1<' in html and 'id="waiting-reversed">1<' in html
    assert f'<tr data-pair="{disputed.pk}">' in html
    assert reverse("curation:agreement") in html
    assert 'id="runs"' not in html and 'id="admin-figures"' not in html  # the admin's sections
    assert 'id="my-annotating"' not in html


def test_an_admin_also_sees_figures_runs_exports_and_imports(client, admin_user):
    judged_pair("expected", "expected", "expected")  # judged to k
    Job.objects.create(kind=Job.Kind.EXPORT, params={"format": "jsonl"}, dedup_key="x", created_by=admin_user)
    client.force_login(admin_user)
    html = client.get(HOME).content.decode()
    assert 'id="figure-judged">1 / 1<' in html
    assert "Export #" in html and 'id="no-runs"' in html
    assert reverse("curation:dashboard") in html


def test_a_reviewer_who_annotates_keeps_the_start_annotating_link(client):
    both = make_user("rev-ann", "reviewer", disciplines=["chemistry"])
    both.groups.add(Group.objects.get_or_create(name="annotator")[0])  # roles are groups; a person may hold two
    make_pair("RU")
    client.force_login(both)
    html = client.get(HOME).content.decode()
    assert 'id="my-annotating"' in html
    assert 'id="waiting-disputed"' in html


def test_the_admins_home_takes_as_many_queries_with_more_decisions_runs_and_jobs(
    client, admin_user, django_assert_max_num_queries
):
    from ml.models import Run

    client.force_login(admin_user)
    first = judged_pair("neither", "other", "both")
    adjudication.adjudicate(admin_user, first.pk, "both")
    with django_assert_max_num_queries(30) as few:
        assert client.get(HOME).status_code == 200
    for _ in range(3):
        pair = judged_pair("other", "other", "expected")
        adjudication.adjudicate(admin_user, pair.pk, "other")
        Run.objects.create(kind="generate", status="queued", created_by=admin_user, params={})
        Job.objects.create(kind=Job.Kind.IMPORT, params={}, dedup_key=f"i{pair.pk}", created_by=admin_user)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = client.get(HOME).content.decode()
    assert html.count("Run #") == 3 and html.count("Import #") == 3

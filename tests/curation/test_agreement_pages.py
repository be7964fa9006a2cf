"""The agreement page (/curation/agreement/) and API (/api/curation/agreement/): who may see them,
what they show, filters, and a number of queries that does not grow with the number of pairs.

This module doubles as a URLconf holding only the agreement API (``urlpatterns`` below), so that
``spectacular --fail-on-warn`` judges this view alone."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.urls import path, reverse

from curation.api_agreement import AgreementView
from curation.services.agreement import DEFAULT_MIN_SHARED
from curation.views_agreement import band
from tests.support.factories import make_pair, make_user
from tests.support.judging import judge_all, plan

pytestmark = pytest.mark.django_db

urlpatterns = [path("api/curation/agreement/", AgreementView.as_view())]

PAGE = "curation:agreement"
API = "curation-agreement"


def judged_pairs(n_pairs: int, annotators) -> list:
    pairs = [make_pair("RU", k=3) for _ in range(n_pairs)]
    judge_all(annotators, plan(pairs, annotators))
    return pairs


@pytest.fixture
def chemists(db):
    return [make_user(f"chem-{n}", "annotator", disciplines=["chemistry"]) for n in range(3)]


# --- Who may see it ------------------------------------------------------------------------


def test_the_page_sends_anonymous_users_to_login(client):
    response = client.get(reverse(PAGE))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_page_refuses_annotators(client, annotator):
    client.force_login(annotator)
    response = client.get(reverse(PAGE))
    assert response.status_code == 403
    assert b"reviewers and admins" in response.content


@pytest.mark.parametrize("who", ["reviewer", "admin_user"])
def test_reviewers_and_admins_see_the_page_and_the_api(client, api, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)
    assert client.get(reverse(PAGE)).status_code == 200
    api.force_authenticate(user)
    assert api.get(reverse(API)).status_code == 200


def test_the_api_refuses_annotators_and_anonymous_callers(api, annotator):
    assert api.get(reverse(API)).status_code == 401
    api.force_authenticate(annotator)
    assert api.get(reverse(API)).status_code == 403


def test_the_page_and_the_api_are_read_only(client, api, reviewer):
    client.force_login(reviewer)
    assert client.post(reverse(PAGE)).status_code == 405
    api.force_authenticate(reviewer)
    for method in (api.post, api.put, api.patch, api.delete):
        assert method(reverse(API)).status_code == 405


# --- What it shows -------------------------------------------------------------------------


def test_the_page_shows_the_figures_the_matrix_and_agreement_with_consensus(client, reviewer, chemists):
    judged_pairs(4, chemists)
    client.force_login(reviewer)
    response = client.get(reverse(PAGE), {"min_shared": 2})
    html = response.content.decode()
    report = response.context["report"]
    assert [row["scope"] for row in response.context["summary"]] == ["overall", "discipline", "task"]
    assert 'data-scope="task" data-key="RU"' in html
    alpha = report["overall"]["krippendorff_alpha"]
    assert f"n = {alpha['n_items']} pairs, {alpha['n_judgements']} judgements" in html
    assert 'id="cohen-matrix"' in html
    for username in ("chem-0", "chem-1", "chem-2"):
        assert f'<tr data-annotator="{username}">' in html
    cell = report["cohen"]["matrix"][0][1]
    band = response.context["matrix"][0]["cells"][1]["band"]
    assert cell["n_items"] >= 2 and f'class="band-{band}"' in html
    assert 'id="consensus-agreement"' in html
    # CSS only (the one script is the site-wide static/js/app.js), nothing from a CDN
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/js/app.js" defer>'] and "https://" not in html


def test_the_page_says_why_a_figure_is_missing(client, reviewer):
    client.force_login(reviewer)
    html = client.get(reverse(PAGE)).content.decode()
    assert "no pair has judgements from two annotators" in html
    assert "No judgements yet." in html


def test_the_page_filters_by_task_and_discipline(client, reviewer, chemists):
    judged_pairs(2, chemists)
    make_pair("IM")
    client.force_login(reviewer)
    response = client.get(reverse(PAGE), {"task": "RU", "discipline": "chemistry"})
    assert response.context["report"]["filters"] == {"task": "RU", "discipline": "chemistry"}
    assert '<option value="RU" selected>' in response.content.decode()
    biology = client.get(reverse(PAGE), {"discipline": "biology"}).context["report"]
    assert biology["overall"]["n_judgements"] == 0


def test_the_page_reports_a_bad_filter_and_applies_the_others(client, reviewer):
    client.force_login(reviewer)
    response = client.get(reverse(PAGE), {"task": "NOPE", "discipline": "biology"})
    assert response.status_code == 200
    assert response.context["form"].errors["task"]
    assert response.context["report"]["filters"] == {"task": None, "discipline": "biology"}


@pytest.mark.parametrize(
    "value, name",
    [
        (-0.3, "poor"),
        (0.0, "slight"),
        (0.2, "slight"),
        (0.21, "fair"),
        (0.6, "moderate"),
        (0.8, "substantial"),
        (1.0, "almost-perfect"),
        (None, "undefined"),
    ],
)
def test_the_colour_bands_follow_landis_and_koch(value, name):
    """Landis, J. R. & Koch, G. G. (1977), "The measurement of observer agreement for categorical
    data", Biometrics 33(1): < 0 poor, 0–0.20 slight, 0.21–0.40 fair, 0.41–0.60 moderate,
    0.61–0.80 substantial, 0.81–1 almost perfect."""
    assert band(value) == name


def test_the_page_query_count_does_not_grow_with_the_number_of_pairs(
    client, reviewer, chemists, django_assert_max_num_queries
):
    client.force_login(reviewer)
    judged_pairs(2, chemists)
    with django_assert_max_num_queries(10) as few:
        client.get(reverse(PAGE), {"min_shared": 1})
    judged_pairs(12, chemists)
    with django_assert_max_num_queries(10) as many:
        response = client.get(reverse(PAGE), {"min_shared": 1})
    assert response.context["report"]["overall"]["n_pairs"] == 14
    assert len(many.captured_queries) == len(few.captured_queries)


# --- The API -------------------------------------------------------------------------------


def test_the_api_returns_the_report(api, reviewer, chemists):
    judged_pairs(3, chemists)
    api.force_authenticate(reviewer)
    body = api.get(reverse(API), {"task": "ru", "min_shared": 1}).json()
    assert body["filters"] == {"task": "RU", "discipline": None}
    assert body["labels"] == ["expected", "other", "both", "neither"]
    assert [row["task"] for row in body["tasks"]] == ["RU"]
    assert body["overall"]["n_judgements"] == 9
    assert set(body["overall"]["fleiss_kappa"]) == {
        "value",
        "n_items",
        "n_judgements",
        "reason",
        "raters_per_item",
        "n_items_excluded",
    }
    assert body["cohen"]["annotators"] == ["chem-0", "chem-1", "chem-2"]
    assert body["cohen"]["matrix"][0][1]["n_items"] == 3
    assert [row["annotator"] for row in body["annotators"]] == ["chem-0", "chem-1", "chem-2"]
    assert api.get(reverse(API)).json()["cohen"]["min_shared"] == DEFAULT_MIN_SHARED


@pytest.mark.parametrize(
    "params, field",
    [({"task": "NOPE"}, "task"), ({"discipline": "alchemy"}, "discipline"), ({"min_shared": 0}, "min_shared")],
)
def test_the_api_rejects_bad_filters(api, reviewer, params, field):
    api.force_authenticate(reviewer)
    response = api.get(reverse(API), params)
    assert response.status_code == 400
    assert field in response.json()


def test_the_api_schema_is_documented_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf", __name__, "--file", str(out))
    text = out.read_text()
    assert "  /api/curation/agreement/:" in text
    for name in ("min_shared", "krippendorff_alpha", "fleiss_kappa", "raters_per_item"):
        assert name in text

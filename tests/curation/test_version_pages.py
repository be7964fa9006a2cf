"""Dataset-version pages (/curation/versions/...) and API (/api/curation/versions/...)."""

import pytest

from curation.models import DatasetVersion
from curation.services import versions
from curation.services.adjudication import adjudicate
from tests.support.judging import judged

pytestmark = pytest.mark.django_db


@pytest.fixture
def pairs():
    return [
        judged("expected", "expected", "expected"),
        judged("other", "other", "expected"),
        judged("expected", "expected", "expected", task="BU"),
    ]


@pytest.fixture
def two_versions(admin_user, reviewer, pairs):
    first = versions.build_version(admin_user, "v1", tasks=["RU"])
    adjudicate(reviewer, pairs[0].pk, "both")
    second = versions.build_version(admin_user, "v2", outcomes=["confirmed", "reversed", "adjudicated", "rejected"])
    return first, second


# --- API -----------------------------------------------------------------------------------------


def test_it_creates_a_version_through_the_api(api, admin_user, pairs):
    api.force_authenticate(admin_user)
    response = api.post(
        "/api/curation/versions/",
        {
            "name": "api-v1",
            "tasks": ["RU"],
            "outcomes": ["confirmed", "reversed"],
            "min_agreement": 0.5,
            "ratios": {"train": 0.5, "validation": 0.25, "test": 0.25},
            "seed": 4,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    version = DatasetVersion.objects.get(name="api-v1")
    assert body["id"] == version.pk and body["content_hash"] == version.content_hash
    assert body["counts"]["total"] == 2 and body["counts"]["tasks"]["RU"]["total"] == 2
    assert body["split_ratios"] == {
        "train": 0.5,
        "validation": 0.25,
        "test": 0.25,
        "seed": 4,
        "keep_imported_splits": True,
        "imported_split_groups": 0,
    }
    assert body["created_by"] == admin_user.username and body["parent"] is None
    again = api.post("/api/curation/versions/", {"name": "api-v2"}, format="json")
    assert again.status_code == 201 and again.json()["parent"] == version.pk
    orphan = api.post("/api/curation/versions/", {"name": "api-v3", "parent": None}, format="json")
    assert orphan.status_code == 201 and orphan.json()["parent"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "dup"}, "name"),
        ({"name": "x", "tasks": ["ZZ"]}, "tasks"),
        ({"name": "x", "outcomes": ["disputed"]}, "outcomes"),
        ({"name": "x", "ratios": {"train": 0.9, "validation": 0.1, "test": 0.1}}, "ratios"),
        ({"name": "x", "min_agreement": 2}, "min_agreement"),
        ({"name": "x", "tasks": ["GR"]}, "detail"),
        ({"tasks": ["RU"]}, "name"),
    ],
)
def test_it_answers_400_to_bad_input(api, admin_user, pairs, body, field):
    versions.build_version(admin_user, "dup")
    api.force_authenticate(admin_user)
    response = api.post("/api/curation/versions/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert DatasetVersion.objects.count() == 1


def test_it_lets_reviewers_read_and_only_admins_build(api, reviewer, annotator, two_versions):
    first, second = two_versions
    assert api.get("/api/curation/versions/").status_code == 401
    api.force_authenticate(annotator)
    assert api.get("/api/curation/versions/").status_code == 403
    api.force_authenticate(reviewer)
    assert api.post("/api/curation/versions/", {"name": "r"}, format="json").status_code == 403
    listing = api.get("/api/curation/versions/").json()
    assert [row["name"] for row in listing["results"]] == ["v2", "v1"]
    detail = api.get(f"/api/curation/versions/{second.pk}/").json()
    assert detail["counts"] == second.counts and "rejected" in detail["filters"]["outcomes"]
    assert api.patch(f"/api/curation/versions/{second.pk}/", {"name": "z"}, format="json").status_code == 405
    assert api.delete(f"/api/curation/versions/{second.pk}/").status_code == 405


def test_it_lists_members_by_split_and_diffs(api, reviewer, pairs, two_versions):
    first, second = two_versions
    api.force_authenticate(reviewer)
    members = api.get(f"/api/curation/versions/{second.pk}/members/?page_size=2").json()
    assert members["count"] == 3 and len(members["results"]) == 2
    assert members["results"][0]["pair"] == pairs[0].pk
    assert members["results"][0]["label"] == "both" and members["results"][0]["outcome"] == "adjudicated"
    for split in ("train", "validation", "test_S", "test_C"):
        rows = api.get(f"/api/curation/versions/{second.pk}/members/?split={split}").json()["results"]
        assert all(row["split"] == split for row in rows)
        assert len(rows) == second.counts["splits"][split]
    assert api.get(f"/api/curation/versions/{second.pk}/members/?split=test").status_code == 400
    assert api.get("/api/curation/versions/9999/members/").status_code == 404
    diff = api.get(f"/api/curation/versions/{first.pk}/diff/{second.pk}/").json()
    assert diff["added"] == [pairs[2].pk] and diff["removed"] == []
    assert diff["relabelled"] == [{"pair": pairs[0].pk, "from": "expected", "to": "both"}]
    assert diff["moved"] == [] and diff["counts"]["unchanged"] == 1
    assert api.get(f"/api/curation/versions/{first.pk}/diff/9999/").status_code == 404


# --- pages ---------------------------------------------------------------------------------------


def test_the_pages_are_for_reviewers_and_the_builder_for_admins(client, reviewer, annotator, two_versions):
    first, second = two_versions
    urls = [
        "/curation/versions/",
        f"/curation/versions/{second.pk}/",
        f"/curation/versions/{first.pk}/diff/{second.pk}/",
    ]
    assert client.get(urls[0]).status_code == 302  # to the login page
    client.force_login(annotator)
    assert all(client.get(url).status_code == 403 for url in urls)
    client.force_login(reviewer)
    assert all(client.get(url).status_code == 200 for url in urls)
    assert client.get("/curation/versions/new/").status_code == 403
    assert client.post("/curation/versions/new/", {"name": "r", "outcomes": ["confirmed"]}).status_code == 403


def test_the_list_and_detail_pages_show_counts_in_few_queries(
    client, admin_user, two_versions, django_assert_max_num_queries
):
    first, second = two_versions
    client.force_login(admin_user)
    with django_assert_max_num_queries(8):
        page = client.get("/curation/versions/").content.decode()
    assert "v1" in page and "v2" in page and second.content_hash[:12] in page
    with django_assert_max_num_queries(8):
        page = client.get(f"/curation/versions/{second.pk}/").content.decode()
    assert second.content_hash in page
    assert f"/curation/versions/{first.pk}/diff/{second.pk}/" in page  # diff vs parent
    assert 'data-task="BU"' in page and 'data-task="RU"' in page
    with django_assert_max_num_queries(8):
        page = client.get(f"/curation/versions/{first.pk}/diff/{second.pk}/").content.decode()
    assert "expected" in page and "both" in page
    assert client.get(f"/curation/versions/{first.pk}/diff/9999/").status_code == 404


def test_the_builder_previews_and_freezes(client, admin_user, pairs, django_assert_max_num_queries):
    client.force_login(admin_user)
    assert client.get("/curation/versions/new/").status_code == 200
    with django_assert_max_num_queries(12):
        page = client.post(
            "/curation/versions/new/",
            {
                "preview": "1",
                "outcomes": ["confirmed", "reversed"],
                "tasks": ["RU", "BU"],
            },
        ).content.decode()
    assert "3 pairs match" in page and 'data-task="BU"' in page
    page = client.post("/curation/versions/new/", {"preview": "1", "outcomes": ["confirmed"], "min_agreement": "0.9"})
    assert "2 pairs match" in page.content.decode()
    assert not DatasetVersion.objects.exists()  # a preview freezes nothing
    response = client.post(
        "/curation/versions/new/",
        {
            "name": "page-v1",
            "outcomes": ["confirmed"],
            "disciplines": ["chemistry"],
            "seed": "2",
            "train": "0.6",
            "validation": "0.2",
            "test": "0.2",
            "exclude_pairs": "",
        },
    )
    version = DatasetVersion.objects.get(name="page-v1")
    assert response.status_code == 302 and response.url == f"/curation/versions/{version.pk}/"
    assert version.counts["total"] == 1 and version.split_ratios["seed"] == 2
    bad = client.post("/curation/versions/new/", {"name": "page-v1", "outcomes": ["confirmed"]})
    assert bad.status_code == 400 and "exists already" in bad.content.decode()
    bad = client.post(
        "/curation/versions/new/",
        {"name": "x", "outcomes": ["confirmed"], "train": "0.9", "validation": "0.2", "test": "0.1"},
    )
    assert "sum to 1" in bad.content.decode() and DatasetVersion.objects.count() == 1


def test_the_builder_posts_its_preview_so_no_token_or_filter_reaches_a_url(client, admin_user, pairs):
    """Issue 16: "Preview counts" submitted the form by GET, which put the CSRF token (and every filter) in
    the URL and the server log. Both buttons now post the form; a GET only shows it."""
    client.force_login(admin_user)
    page = client.get("/curation/versions/new/").content.decode()
    form = page[page.index('<form method="') :]
    assert form.startswith('<form method="post"') and 'formmethod="get"' not in page
    leaked = client.get("/curation/versions/new/", {"preview": "1", "outcomes": ["confirmed"]}).content.decode()
    assert "pairs match" not in leaked  # a GET with filters no longer previews (nothing to bookmark or log)

"""What the API fuzz run (tests/test_api_fuzz.py) found, each reproduced without schemathesis."""

from __future__ import annotations

import pytest

from curation.models import DatasetVersion
from curation.services import exporting
from tests.test_export import make_version

pytestmark = pytest.mark.django_db

ZERO_SPLITS = {"train": 0, "validation": 0, "test_S": 0, "test_C": 0}


@pytest.fixture
def schema(client):
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


@pytest.fixture
def as_admin(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def test_it_shows_a_version_whose_counts_filters_and_ratios_are_the_model_defaults(as_admin, admin_user):
    """A version row made outside build_version (benchmark seeds make them with counts={}) was a 500 in the
    list and the detail: the output serializers required every key."""
    version = DatasetVersion.objects.create(name="bare", content_hash="0" * 64, created_by=admin_user)

    listing = as_admin.get("/api/curation/versions/")
    detail = as_admin.get(f"/api/curation/versions/{version.pk}/")

    assert listing.status_code == 200 and detail.status_code == 200
    assert listing.json()["results"][0] == detail.json()
    body = detail.json()
    assert body["counts"] == {"total": 0, "splits": ZERO_SPLITS, "tasks": {}}
    assert body["split_ratios"] == {"train": None, "validation": None, "test": None, "seed": None}
    assert body["filters"] == {"tasks": None, "disciplines": None, "outcomes": [], "min_agreement": None,
                               "exclude_pairs": [], "exclude_tuples": []}


def test_it_shows_a_version_with_partial_task_counts(as_admin, admin_user):
    version = DatasetVersion.objects.create(name="partial", content_hash="1" * 64, created_by=admin_user,
                                            counts={"total": 2, "tasks": {"RU": {"train": 2}}},
                                            split_ratios={"seed": 3})

    body = as_admin.get(f"/api/curation/versions/{version.pk}/").json()

    assert body["counts"] == {"total": 2, "splits": ZERO_SPLITS, "tasks": {"RU": {**ZERO_SPLITS, "train": 2,
                                                                                   "total": 0}}}
    assert body["split_ratios"]["seed"] == 3 and body["split_ratios"]["train"] is None


def test_it_documents_the_refusals_that_drf_answers_for_every_operation(schema):
    """401, 403, 404 and 400 answered by DRF itself were undocumented for almost every operation."""
    operations = [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) > 50
    for method, path, op in operations:
        codes = set(op["responses"])
        if path != "/api/auth/token/":
            assert {"401", "403"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if method in ("post", "put", "patch") and "requestBody" in op:
            assert "400" in codes, (method, path)
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["detail"] and set(error["properties"]) == {"detail", "code"}
    assert schema["paths"]["/api/pairs/"]["get"]["responses"]["404"]["description"].endswith("no such page.")


def test_it_answers_a_page_past_the_end_with_the_documented_404(as_admin):
    response = as_admin.get("/api/pairs/", {"page": 99})
    assert response.status_code == 404 and set(response.json()) <= {"detail", "code"}


@pytest.mark.parametrize("path", ["/api/disciplines/{slug}/", "/api/tasks/{code}/"])
def test_it_documents_the_409_of_deleting_taxonomy_in_use(schema, path):
    assert schema["paths"][path]["delete"]["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_it_documents_a_reviewers_judgement_as_any_of_the_two_shapes(schema):
    """A reviewer's judgement has every field of an annotator's, so it matched both shapes of a oneOf."""
    schemas = schema["components"]["schemas"]
    review, own = (set(schemas[name]["properties"]) for name in ("ReviewJudgement", "OwnJudgement"))
    assert own < review
    assert "oneOf" not in schemas["JudgementForRole"]
    assert schemas["JudgementForRole"]["anyOf"] == [{"$ref": "#/components/schemas/ReviewJudgement"},
                                                    {"$ref": "#/components/schemas/OwnJudgement"}]


def test_it_documents_export_downloads_as_any_media_type(schema, as_admin, admin_user):
    """Export files are served with the type of their name (export.json is application/json)."""
    version = make_version(admin_user)
    exporting.export_version(version, "jsonl")
    download = schema["paths"]["/api/curation/versions/{version_id}/exports/{export_format}/{path}"]["get"]

    response = as_admin.get(f"/api/curation/versions/{version.pk}/exports/jsonl/export.json")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert set(download["responses"]["200"]["content"]) == set(download["responses"]["206"]["content"]) == {"*/*"}

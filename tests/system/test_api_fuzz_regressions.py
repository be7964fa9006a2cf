"""What the API fuzz run (tests/system/test_api_fuzz.py) found, each reproduced without schemathesis."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Task
from curation.models import DatasetVersion
from curation.services import exporting
from tests.support.factories import make_pair, png_bytes
from tests.support.versions import make_version

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
    assert body["filters"] == {
        "tasks": None,
        "disciplines": None,
        "outcomes": [],
        "min_agreement": None,
        "exclude_pairs": [],
        "exclude_tuples": [],
    }


def test_it_shows_a_version_with_partial_task_counts(as_admin, admin_user):
    version = DatasetVersion.objects.create(
        name="partial",
        content_hash="1" * 64,
        created_by=admin_user,
        counts={"total": 2, "tasks": {"RU": {"train": 2}}},
        split_ratios={"seed": 3},
    )

    body = as_admin.get(f"/api/curation/versions/{version.pk}/").json()

    assert body["counts"] == {
        "total": 2,
        "splits": ZERO_SPLITS,
        "tasks": {"RU": {**ZERO_SPLITS, "train": 2, "total": 0}},
    }
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
        "$ref": "#/components/schemas/Error"
    }


def test_it_documents_a_reviewers_judgement_as_any_of_the_two_shapes(schema):
    """A reviewer's judgement has every field of an annotator's, so it matched both shapes of a oneOf."""
    schemas = schema["components"]["schemas"]
    review, own = (set(schemas[name]["properties"]) for name in ("ReviewJudgement", "OwnJudgement"))
    assert own < review
    assert "oneOf" not in schemas["JudgementForRole"]
    assert schemas["JudgementForRole"]["anyOf"] == [
        {"$ref": "#/components/schemas/ReviewJudgement"},
        {"$ref": "#/components/schemas/OwnJudgement"},
    ]


def test_it_documents_export_downloads_as_any_media_type(schema, as_admin, admin_user):
    """Export files are served with the type of their name (export.json is application/json)."""
    version = make_version(admin_user)
    exporting.export_version(version, "jsonl")
    download = schema["paths"]["/api/curation/versions/{version_id}/exports/{export_format}/{path}"]["get"]

    response = as_admin.get(f"/api/curation/versions/{version.pk}/exports/jsonl/export.json")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert set(download["responses"]["200"]["content"]) == set(download["responses"]["206"]["content"]) == {"*/*"}


# --- NUL characters (PostgreSQL text cannot hold them: DataError, a 500, wherever one met a query) -----------


def test_it_refuses_nul_in_a_query_filter(api, annotator):
    api.force_authenticate(annotator)
    response = api.get("/api/tasks/", {"discipline": "bio\x00logy"})
    assert response.status_code == 400 and response.json()["code"] == "nul_character"


def test_it_refuses_nul_in_a_json_body(as_admin):
    response = as_admin.post(
        "/api/tasks/", {"code": "ZZ", "name": "Z", "kind": "ST", "discipline": "\x00"}, format="json"
    )
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert not Task.objects.filter(code="ZZ").exists()


def test_it_refuses_nul_in_a_path(api, annotator):
    api.force_authenticate(annotator)
    response = api.get("/api/disciplines/chem%00istry/")
    assert response.status_code == 400 and response.json()["code"] == "nul_character"


def test_it_still_takes_the_same_requests_without_nul(as_admin):
    assert as_admin.get("/api/tasks/", {"discipline": "biology"}).json()["count"] == 4
    response = as_admin.post(
        "/api/tasks/", {"code": "ZZ", "name": "Z", "kind": "ST", "discipline": "physics"}, format="json"
    )
    assert response.status_code == 201


# --- The token endpoint -------------------------------------------------------------------------------------


def test_it_refuses_a_username_longer_than_the_user_model_allows(api, annotator):
    """django-axes records a failed login in a 255-character column: a longer username was a 500."""
    response = api.post("/api/auth/token/", {"username": "u" * 300, "password": "pw"}, format="json")
    assert response.status_code == 400 and "username" in response.json()


def test_it_still_issues_a_token_for_good_credentials(api, annotator):
    response = api.post("/api/auth/token/", {"username": annotator.username, "password": "pw-for-tests-1"})
    assert response.status_code == 200 and len(response.json()["token"]) == 40


# --- Queue refusals and upload shapes the schema did not document ------------------------------------------


def test_it_documents_the_refusals_of_the_lease_endpoints(schema, api, annotator):
    make_pair("RU")
    api.force_authenticate(annotator)
    lease_id = api.post("/api/queue/next/").json()["lease_id"]
    assert api.post("/api/judgements/undo/").status_code == 404
    assert api.post(f"/api/leases/{lease_id}/judgement/", {"choice": "left"}, format="json").status_code == 201

    assert api.post(f"/api/leases/{lease_id}/heartbeat/").status_code == 409
    assert api.post(f"/api/leases/{lease_id}/release/").status_code == 409
    for path in (
        "/api/leases/{lease_id}/heartbeat/",
        "/api/leases/{lease_id}/release/",
        "/api/leases/{lease_id}/judgement/",
    ):
        assert "409" in schema["paths"][path]["post"]["responses"], path
    assert "404" in schema["paths"]["/api/judgements/undo/"]["post"]["responses"]


def test_it_documents_that_an_uploaded_image_may_have_no_tuple(schema, as_admin):
    response = as_admin.post("/api/images/", {"file": SimpleUploadedFile("a.png", png_bytes())}, format="multipart")
    assert response.status_code == 201 and response.json()["tuple"] is None
    assert schema["components"]["schemas"]["Image"]["properties"]["tuple"]["nullable"] is True


# --- Import paths the filesystem cannot hold ----------------------------------------------------------------


@pytest.fixture
def import_root(settings, tmp_path):
    root = tmp_path / "imports"
    root.mkdir()
    settings.IMPORT_ROOTS = [str(root)]
    return root


def test_it_refuses_an_import_path_with_a_name_too_long_for_the_filesystem(as_admin, import_root):
    """``Path.exists()`` raises ENAMETOOLONG for a name over 255 bytes: a 500 in the import API."""
    response = as_admin.post("/api/curation/imports/", {"path": "x" * 300}, format="json")
    assert response.status_code == 400 and "does not exist" in response.json()["path"][0]


def test_the_import_form_refuses_it_too(client, admin_user, import_root):
    client.force_login(admin_user)
    response = client.post("/curation/imports/new/", {"path": "x" * 300, "format": "auto"})
    assert response.status_code == 400 and b"does not exist under the import root" in response.content

"""The OpenAPI schema is generated without warnings, validates, and the docs page is self-hosted."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

ENDPOINTS = [
    "/api/disciplines/",
    "/api/disciplines/{slug}/",
    "/api/tasks/",
    "/api/tasks/{code}/",
    "/api/tuples/",
    "/api/tuples/{id}/",
    "/api/images/",
    "/api/images/{id}/",
    "/api/images/{id}/file/",
    "/api/pairs/",
    "/api/pairs/{id}/",
    "/api/judgements/",
    "/api/judgements/{id}/",
    "/api/me/",
    "/api/auth/token/",
]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """The docs page resolves {% static %}; the manifest storage of production needs collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_it_generates_and_validates_the_schema_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ENDPOINTS:
        assert f"  {path}:" in text, path


def test_it_serves_the_schema(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert set(ENDPOINTS) <= set(schema["paths"])
    upload = schema["paths"]["/api/images/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"200", "201", "400"} <= set(upload["responses"])


def test_it_documents_both_judgement_shapes(client, db):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]["schemas"]
    assert "chosen_image" in schemas["ReviewJudgement"]["properties"]
    assert "chosen_image" not in schemas["OwnJudgement"]["properties"]


def test_it_serves_swagger_ui_from_local_static_files(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    sidecar = [a for a in assets if a.startswith("/static/drf_spectacular_sidecar/")]
    assert any(a.endswith("swagger-ui-bundle.js") for a in sidecar)
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in sidecar:
        assert finders.find(asset.removeprefix("/static/")), asset

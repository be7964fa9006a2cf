"""Unmatched URLs: JSON under /api/ (as the API's own 404s), Django's HTML page elsewhere."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/no-such-endpoint/", "/api/queue/nope", "/api/ml/unknown/1/"])
def test_an_unmatched_api_url_answers_json_like_the_api(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_an_unmatched_page_url_still_gets_the_html_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_path_that_only_starts_like_the_api_is_a_page(client):
    response = client.get("/apis/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")

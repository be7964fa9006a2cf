"""``/favicon.ico`` answers with the app's icon (issue 16: a 404 on every first page), and every page names it."""

import pytest


@pytest.mark.django_db
def test_the_favicon_is_served_and_every_page_links_it(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert client.post("/favicon.ico").status_code == 405
    login = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg"' in login

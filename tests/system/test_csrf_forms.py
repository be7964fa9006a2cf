"""CSRF on every form: each page of the permission matrix (tests/support/permission_matrix.py) is rendered for
every role that may open it; every POST form on it carries the CSRF token, and a POST to each form's
endpoint (and to every unsafe API route, with a session) without the token is refused with 403."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
from django.test import Client

from tests.support import permission_world
from tests.support.permission_matrix import CELLS
from tests.support.permission_world import ROLES


class _Forms(HTMLParser):
    """The forms of a page: method, action and the names of their inputs."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._open = {
                "method": (attrs.get("method") or "get").lower(),
                "action": attrs.get("action") or "",
                "inputs": set(),
            }
            self.forms.append(self._open)
        elif tag in ("input", "button", "select", "textarea") and self._open is not None and attrs.get("name"):
            self._open["inputs"].add(attrs["name"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def post_forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return [form for form in parser.forms if form["method"] == "post"]


@pytest.fixture
def world(db, settings, tmp_path):
    return permission_world.build(settings, tmp_path)


def page_cells():
    return [c for c in CELLS if c.method == "GET" and not c.route.startswith("api/")]


def pages_with_forms(world) -> list[tuple[str, str, dict]]:
    """(role, page path, form) for every POST form that any role sees on any page."""
    found = []
    for cell in page_cells():
        for role in ROLES:
            if cell.expected(role) != "200":
                continue
            client = Client()
            if role != "anonymous":
                client.force_login(world["users"][role])
            path = cell.path.format(**world)
            response = client.get(path)
            assert response.status_code == 200, (path, role)
            if not response["Content-Type"].startswith("text/html"):
                continue  # an image the page serves (an evaluation's generations): no form in it
            found += [(role, path, form) for form in post_forms(response.content.decode())]
    return found


def test_every_post_form_carries_the_csrf_token(world):
    forms = pages_with_forms(world)
    missing = [
        f"{path} as {role}: form to {form['action'] or path!r}"
        for role, path, form in forms
        if "csrfmiddlewaretoken" not in form["inputs"]
    ]
    assert len({(path, form["action"]) for _, path, form in forms}) >= 12, "the pages' forms were found"
    assert not missing, "\n".join(missing)


def test_every_form_endpoint_refuses_a_post_without_the_token(world):
    endpoints = {}
    for role, path, form in pages_with_forms(world):
        endpoints.setdefault(urljoin(path, form["action"] or path), (role, path))
    accepted = []
    for action, (role, page) in sorted(endpoints.items()):
        client = Client(enforce_csrf_checks=True)
        if role != "anonymous":
            client.force_login(world["users"][role])
        client.get(page)  # the CSRF cookie is set; only the token is left out of the POST
        assert client.cookies.get("csrftoken"), page
        response = client.post(action, {"username": "ann-chem", "password": world["PASSWORD"]})
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted.append(f"POST {action} as {role}: {response.status_code}")
    assert {"/accounts/login/", "/accounts/logout/"} <= set(endpoints)
    assert not accepted, "\n".join(accepted)


@pytest.mark.parametrize("role", ["annotator", "reviewer", "admin"])
def test_the_api_refuses_a_session_write_without_the_token(world, role):
    """The annotate page drives the queue API with its session: writes need the CSRF token too."""
    accepted = []
    for cell in CELLS:
        if not cell.route.startswith("api/") or cell.method == "GET" or cell.expected(role)[0] not in "23":
            continue
        client = Client(enforce_csrf_checks=True)
        client.force_login(world["users"][role])
        response = getattr(client, cell.method.lower())(cell.path.format(**world), content_type="application/json")
        if response.status_code != 403 or b"CSRF" not in response.content:
            accepted.append(f"{cell.method} {cell.path}: {response.status_code}")
    assert not accepted, "\n".join(accepted)

"""Every API operation that takes a body answers hostile bodies with a 4xx, never a 5xx: a body that is not
an object (a list, a string, a number, null), a lone UTF-16 surrogate in a string, and nesting far beyond
any schema. The schemathesis run (test_api_fuzz.py) generates bodies from the schema and so never sent
these shapes; each answered 500 somewhere before (issue 15, item 2). Run for every write operation of
the OpenAPI schema, as an admin (who reaches the deepest code), an annotator and anonymously, with the
path's ids pointing at real rows where the operation names one."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from annotation.models import Lease
from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_pair, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

BODIES = {
    "a list": b"[1, 2]",
    "a string": b'"x"',
    "a number": b"42",
    "null": b"null",
    "a lone surrogate": b'{"choice": "\\ud800", "name": "\\udfff", "path": "\\ud800", "username": "\\ud800", '
    b'"password": "x", "label": "\\ud800", "kind": "\\ud800", "k": 2}',
    "1,000 levels": b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "100,000 levels": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.fixture
def world(admin_user):
    pair = make_pair("RU")
    annotator = make_user("hostile-bodies", disciplines=["chemistry"])
    lease = queue.next_lease(annotator)
    judging.judge(annotator, lease.id, queue.JudgementInput("left"))
    leased = queue.next_lease(annotator) or Lease.objects.get(pk=lease.pk)
    return {"pair": pair, "annotator": annotator, "admin": admin_user, "lease": leased}


def write_operations(client) -> list[tuple[str, str]]:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    return [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("post", "put", "patch")
    ]


def concrete(path: str, world) -> str:
    """The path with each ``{param}`` filled: a lease's id for lease paths, a pair's otherwise; codes and
    names with values that exist."""

    def fill(match):
        name = match.group(1)
        if "lease" in name or "/leases/" in path:
            return str(world["lease"].pk)
        if name in ("code", "task"):
            return "RU"
        if name in ("slug", "discipline"):
            return "chemistry"
        if name in ("format", "file", "side"):
            return "jsonl"
        return str(world["pair"].pk)

    return re.sub(r"\{([^}]+)\}", fill, path)


def test_no_write_operation_answers_a_hostile_body_with_a_server_error(world):
    client = APIClient()
    operations = write_operations(client)
    assert len(operations) > 25
    failures, statuses = [], {}
    for who in ("admin", "annotator", None):
        for method, path in operations:
            url = concrete(path, world)
            for name, body in BODIES.items():
                api = APIClient()
                if who is not None:
                    api.force_authenticate(world[who])
                response = api.generic(method, url, body, content_type="application/json")
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{who} {method} {url} with {name}: {response.status_code}")
    assert failures == []
    assert statuses.get(400, 0) > len(operations)  # the bodies reached the parsers, not just the permission checks

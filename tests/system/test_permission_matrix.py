"""Every route × method × role answers as tests/support/permission_matrix.py declares, the table covers every
route the resolver knows, and annotators never receive the answer or the hidden prompts.

Each request runs in its own savepoint that is rolled back, on a fresh client, so one world serves
every cell and no cell sees another's writes (a DELETE, a logout, a judgement)."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin as django_admin
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from annotation.models import Judgement, Lease
from annotation.services import queue
from tests.support import permission_world
from tests.support.permission_matrix import ADMIN_SITE_PREFIX, CELLS, FORMAT_SUFFIX, Cell
from tests.support.permission_world import ANSWER_WORDS, ROLES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DOCUMENTATION = {"api/schema/", "api/docs/"}  # describe field names by design; they hold no data


def resolver_routes(resolver=None, prefix: str = "") -> list[str]:
    """Every URL pattern, as the concatenation of its resolvers' patterns."""
    routes = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            routes += resolver_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            routes.append(prefix + str(entry.pattern))
    return routes


def suffix_cells() -> list[Cell]:
    """DRF's format-suffix twin of every router route (``/api/pairs.json``) answers like the route."""
    by_route = {}
    for cell in CELLS:
        by_route.setdefault(cell.route, []).append(cell)
    twins = []
    for route in resolver_routes():
        if FORMAT_SUFFIX in route:
            for cell in by_route.get(route.replace(FORMAT_SUFFIX, "/$"), []):
                twins.append(
                    Cell(route, cell.method, cell.path.rstrip("/") + ".json", cell.answers, cell.body, cell.multipart)
                )
    return twins


def all_cells() -> list[Cell]:
    return CELLS + suffix_cells()


def call(world: dict, cell: Cell, role: str, method: str | None = None) -> tuple[int, dict, bytes]:
    """The answer to ``cell`` as ``role``: status, headers and body, with every write rolled back."""
    client = APIClient()
    path = cell.path.format(**world)
    data = cell.body(world) if cell.body and method in (None, cell.method) else None
    fmt = "json" if cell.route.startswith("api/") and not cell.multipart else "multipart"
    with transaction.atomic():
        if role != "anonymous":
            client.force_login(world["users"][role])
        response = getattr(client, (method or cell.method).lower())(path, data, format=fmt)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        transaction.set_rollback(True)
    return response.status_code, dict(response.headers), body


def matches(expected: str, status: int, headers: dict) -> bool:
    if expected == "A":
        return status in (401, 403)
    if expected == "L":
        return status == 302 and headers.get("Location", "").startswith(reverse("login"))
    return status == int(expected)


@pytest.fixture
def world(db, settings, tmp_path):
    return permission_world.build(settings, tmp_path)


def test_it_declares_every_route_and_only_routes_that_exist():
    routes = set(resolver_routes())
    declared = {cell.route for cell in CELLS}
    undeclared = {r for r in routes - declared if not r.startswith(ADMIN_SITE_PREFIX) and FORMAT_SUFFIX not in r}
    assert not undeclared, f"routes without a row in tests/support/permission_matrix.py: {sorted(undeclared)}"
    assert not declared - routes, f"rows for routes that do not exist: {sorted(declared - routes)}"
    twins = {r for r in routes if FORMAT_SUFFIX in r}
    assert twins and {c.route for c in suffix_cells()} == twins, "every format-suffix route has its base rows"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_the_declared_answers(world, role):
    wrong = []
    for cell in all_cells():
        status, headers, body = call(world, cell, role)
        if not matches(cell.expected(role), status, headers):
            wrong.append(
                f"{cell.method} {cell.path} as {role}: {status}, declared {cell.expected(role)}: {body[:160]!r}"
            )
    assert not wrong, "\n".join(wrong)


def _privileged(cells: list[Cell]) -> str:
    """The role that gets a success from the route (the method check comes after the role check)."""
    for first in "23":
        for role in ("admin", "reviewer", "annotator", "anonymous"):
            if any(c.expected(role)[0] == first for c in cells):
                return role
    raise AssertionError(f"no role may use {cells[0].route}")


def test_every_method_the_table_does_not_declare_is_refused_with_405(world):
    by_route: dict[str, list[Cell]] = {}
    for cell in CELLS:
        if not cell.route.startswith(ADMIN_SITE_PREFIX):
            by_route.setdefault(cell.route, []).append(cell)
    wrong = []
    for _route, cells in by_route.items():
        role, declared = _privileged(cells), {c.method for c in cells}
        for method in set(METHODS) - declared:
            status, _, _ = call(world, cells[0], role, method)
            if status != 405:
                wrong.append(f"{method} {cells[0].path} as {role}: {status}, not declared (405 expected)")
    assert not wrong, f"{len(wrong)} wrong:\n" + "\n".join(wrong)


def _leaks(text: str, hidden: list[str]) -> list[str]:
    found = [f"prompt {t!r}" for t in hidden if t in text]
    found += [f"word {w!r}" for w in ANSWER_WORDS if re.search(rf"\b{w}", text, re.IGNORECASE)]
    return found


@pytest.mark.parametrize("role", ["annotator", "other_field"])
def test_annotators_never_receive_the_answer_or_the_hidden_prompts(world, role):
    assert world["hidden_texts"], "the world has explicit and superficial prompts to look for"
    reached, leaks = 0, []
    for cell in all_cells():
        if cell.route in DOCUMENTATION or cell.expected(role)[0] != "2":
            continue
        status, headers, body = call(world, cell, role)
        if headers.get("Content-Type", "").startswith("image/"):
            continue
        reached += 1
        if found := _leaks(body.decode(), world["hidden_texts"]):
            leaks.append(f"{cell.method} {cell.path}: {', '.join(found)}")
    assert reached >= 5, "the annotator reached their pages and API"
    assert not leaks, "\n".join(leaks)


def test_the_leak_scan_finds_what_reviewers_are_shown(world):
    """The scan above is not blind: the reviewer's tuples and pairs carry exactly what it looks for."""
    tuples = Cell("api/^tuples/$", "GET", "/api/tuples/", ("",) * len(ROLES))
    pairs = Cell("api/^pairs/$", "GET", "/api/pairs/", ("",) * len(ROLES))
    found = _leaks(
        call(world, tuples, "reviewer")[2].decode() + call(world, pairs, "reviewer")[2].decode(), world["hidden_texts"]
    )
    assert set(found) >= {f"prompt {t!r}" for t in world["hidden_texts"]} | {
        "word 'explicit_prompt'",
        "word 'image_correct'",
    }


def test_annotators_see_only_their_own_judgements(world):
    client = APIClient()
    client.force_login(world["users"]["annotator"])
    listed = client.get("/api/judgements/").json()["results"]
    assert [row["id"] for row in listed] == [world["judgement"]]
    assert client.get("/api/judgements/", {"annotator": "ann-chem-2"}).json()["results"] == []
    assert client.get(f"/api/judgements/{world['peer_judgement']}/").status_code == 404
    reviewer = APIClient()
    reviewer.force_login(world["users"]["reviewer"])
    assert {row["id"] for row in reviewer.get("/api/judgements/").json()["results"]} == {
        world["judgement"],
        world["peer_judgement"],
    }


def test_an_annotator_of_another_field_gets_no_pair_outside_it(world):
    other = world["users"]["other_field"]
    client = APIClient()
    client.force_login(other)
    for query in ("", "?task=RU", "?discipline=chemistry"):
        assert client.post(f"/api/queue/next/{query}").status_code == 204, query
    assert not Lease.objects.filter(annotator=other).exists()
    assert queue.next_lease(other, task="RU") is None
    assert client.get(f"/api/leases/{world['lease']}/image/left/").status_code == 404
    assert client.post(f"/api/leases/{world['lease']}/judgement/", {"choice": "left"}, format="json").status_code == 404
    assert not Judgement.objects.filter(annotator=other).exists()


def test_only_staff_reach_any_page_of_the_django_admin(world):
    pages = ["/admin/"] + [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in apps.get_models()
        if django_admin.site.is_registered(m)
    ]
    wrong = []
    for role in ROLES:
        for path in pages:
            cell = Cell("admin/", "GET", path, ("",) * len(ROLES))
            status, headers, _ = call(world, cell, role)
            allowed = role == "admin"
            ok = status == 200 if allowed else (status == 302 and "/admin/login/" in headers.get("Location", ""))
            if not ok:
                wrong.append(f"{path} as {role}: {status}")
    assert len(pages) > 10
    assert not wrong, "\n".join(wrong)

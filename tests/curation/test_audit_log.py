"""The audit log page (/curation/audit/) and API (/api/curation/audit/): admins only, newest
first, 50 a page, filters, and no way to write.

This module doubles as a URLconf holding only the audit API (``urlpatterns`` below), so that
``spectacular --fail-on-warn`` judges this view alone."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import path, reverse

from annotation.models import AuditEvent
from annotation.services import audit
from curation.api_audit import AuditEventListView
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db

urlpatterns = [path("api/curation/audit/", AuditEventListView.as_view())]

PAGE = "curation:audit"
API = "curation-audit"


@pytest.fixture
def events(admin_user, reviewer):
    """Three events on two pairs by two actors, recorded by the audit service, oldest first."""
    first, second = make_pair("RU"), make_pair("RU")
    # Making the pairs audits their catalogue creation; these tests are about the three events below.
    AuditEvent.objects.all().delete()
    return [
        audit.record(admin_user, "pair.k_changed", first, before={"k": 3}, after={"k": 5}),
        audit.record(reviewer, "adjudication.created", second, after={"label": "other"}),
        audit.record(None, "pair.k_changed", second, before={"k": 3}, after={"k": 4}),
    ]


# --- Who may read it -----------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login_or_refused(client, api):
    response = client.get(reverse(PAGE))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert api.get(reverse(API)).status_code == 401


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_annotators_and_reviewers_are_refused(client, api, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)
    response = client.get(reverse(PAGE))
    assert response.status_code == 403
    assert b"Only admins read the audit log." in response.content
    api.force_authenticate(user)
    assert api.get(reverse(API)).status_code == 403


# --- What it lists -------------------------------------------------------------------------


def test_the_page_lists_recorded_events_newest_first(client, admin_user, events):
    client.force_login(admin_user)
    response = client.get(reverse(PAGE), {"action": "pair.k_changed"})
    rows = [row["event"] for row in response.context["rows"]]
    assert rows == [events[2], events[0]]
    html = response.content.decode()
    assert f'<tr data-event="{events[0].pk}">' in html
    assert "system" in html  # the event without an actor
    assert "&quot;k&quot;: 5" in html  # the after state, as JSON


def test_the_api_lists_recorded_events_newest_first(api, admin_user, events):
    api.force_authenticate(admin_user)
    body = api.get(reverse(API), {"action": "pair.k_changed"}).json()
    assert body["count"] == 2
    newest, oldest = body["results"]
    assert newest["id"] == events[2].pk and newest["actor"] is None
    assert oldest == {
        "id": events[0].pk,
        "created_at": oldest["created_at"],
        "actor": admin_user.username,
        "action": "pair.k_changed",
        "target_type": "pair",
        "target_id": str(events[0].target_id),
        "before": {"k": 3},
        "after": {"k": 5},
    }


def listed(client, api, admin_user, params) -> list[int]:
    """The event ids the page lists for these filters, after checking that the API lists the same."""
    client.force_login(admin_user)
    on_page = [row["event"].pk for row in client.get(reverse(PAGE), params).context["rows"]]
    api.force_authenticate(admin_user)
    assert [event["id"] for event in api.get(reverse(API), params).json()["results"]] == on_page
    return on_page


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"action": "adjudication.created"}, [1]),
        ({"actor": "boss"}, [0]),
        ({"target_type": "PAIR", "action": "pair.k_changed"}, [2, 0]),
        ({"actor": "nobody"}, []),
    ],
)
def test_the_filters_narrow_the_list_on_the_page_and_the_api(client, api, admin_user, events, params, expected):
    assert listed(client, api, admin_user, params) == [events[index].pk for index in expected]


def test_target_type_and_id_give_one_objects_history(client, api, admin_user, events):
    params = {"target_type": "pair", "target_id": events[1].target_id}
    assert listed(client, api, admin_user, params) == [events[2].pk, events[1].pk]


def test_the_page_offers_the_recorded_actions_and_target_types(client, admin_user, events):
    client.force_login(admin_user)
    response = client.get(reverse(PAGE), {"action": "adjudication.created"})
    assert {"pair.k_changed", "adjudication.created"} <= set(response.context["actions"])
    assert "pair" in response.context["target_types"]
    assert '<option value="adjudication.created" selected>' in response.content.decode()


def test_both_paginate_by_fifty(client, api, admin_user, events, django_assert_max_num_queries):
    pair = make_pair("RU")
    for n in range(52):
        audit.record(admin_user, "pair.touched", pair, after={"n": n})
    client.force_login(admin_user)
    with django_assert_max_num_queries(8):
        first = client.get(reverse(PAGE), {"action": "pair.touched"})
    assert [row["event"].after["n"] for row in first.context["rows"]] == list(range(51, 1, -1))
    assert 'rel="next"' in first.content.decode()
    second = client.get(reverse(PAGE), {"action": "pair.touched", "page": 2})
    assert [row["event"].after["n"] for row in second.context["rows"]] == [1, 0]
    api.force_authenticate(admin_user)
    body = api.get(reverse(API), {"action": "pair.touched"}).json()
    assert (body["count"], len(body["results"]), body["previous"]) == (52, 50, None)
    assert "page=2" in body["next"]


# --- No way to write -----------------------------------------------------------------------


def test_the_api_answers_405_to_every_write(api, admin_user, events):
    api.force_authenticate(admin_user)
    for method in (api.post, api.put, api.patch, api.delete):
        assert method(reverse(API), {"action": "forged"}, format="json").status_code == 405
    assert api.get(f"{reverse(API)}{events[0].pk}/").status_code == 404  # no detail route to edit through
    assert AuditEvent.objects.filter(action="forged").count() == 0
    assert AuditEvent.objects.get(pk=events[0].pk).after == {"k": 5}


def test_the_page_has_no_edit_path(client, admin_user, events):
    client.force_login(admin_user)
    assert client.post(reverse(PAGE), {"action": "forged"}).status_code == 405
    html = client.get(reverse(PAGE)).content.decode()
    assert html.count('method="post"') == 1  # the log-out button of the top bar, nothing else
    assert AuditEvent.objects.filter(action="forged").count() == 0


def test_the_api_schema_documents_a_read_only_list_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf", __name__, "--file", str(out))
    text = out.read_text()
    section = text.split("  /api/curation/audit/:", 1)[1].split("components:", 1)[0]
    assert "    get:" in section
    assert not any(f"    {method}:" in section for method in ("post", "put", "patch", "delete"))
    for name in ("action", "actor", "target_type", "target_id", "page"):
        assert f"name: {name}" in section


def test_it_audits_catalogue_changes_with_their_actor(admin_user, api):
    """Tuples, images, pairs, k changes and retirement are state changes too (annotation.services.catalog)."""
    from annotation.models import AuditEvent
    from tests.support.factories import png_bytes

    api.force_authenticate(admin_user)
    tuple_id = api.post(
        "/api/tuples/", {"implicit_prompt": "An iron gate in the rain for years.", "task": "RU"}, format="json"
    ).json()["id"]
    images = [
        api.post("/api/images/", {"file": _upload(png_bytes())}, format="multipart").json()["id"] for _ in range(2)
    ]
    pair_id = api.post(
        "/api/pairs/", {"tuple": tuple_id, "image_correct": images[0], "image_wrong": images[1]}, format="json"
    ).json()["id"]
    api.patch(f"/api/pairs/{pair_id}/", {"k": 5}, format="json")
    api.patch(f"/api/pairs/{pair_id}/", {"status": "retired"}, format="json")
    actions = list(AuditEvent.objects.filter(actor=admin_user).order_by("id").values_list("action", flat=True))
    assert actions == [
        "tuple.created",
        "image.created",
        "image.created",
        "pair.created",
        "pair.k_changed",
        "pair.retired",
    ]
    k_change = AuditEvent.objects.get(action="pair.k_changed")
    assert (k_change.before["k"], k_change.after["k"]) == (3, 5)


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("x.png", data, content_type="image/png")


def test_it_audits_taxonomy_writes_through_the_api(admin_user, api):
    api.force_authenticate(admin_user)
    assert api.post("/api/disciplines/", {"slug": "geology", "name": "Geology"}, format="json").status_code == 201
    assert api.patch("/api/disciplines/geology/", {"name": "Earth science"}, format="json").status_code == 200
    assert api.delete("/api/disciplines/geology/").status_code == 204
    assert api.delete("/api/disciplines/physics/").status_code == 409  # in use: refused, and not audited
    events = AuditEvent.objects.filter(target_type="discipline").order_by("id")
    assert [e.action for e in events] == ["discipline.created", "discipline.changed", "discipline.deleted"]
    assert (events[1].before["name"], events[1].after["name"]) == ("Geology", "Earth science")


def test_it_audits_direct_admin_edits_without_password_hashes(admin_user, annotator, client):
    client.force_login(admin_user)
    from annotation.models import Task

    task = Task.objects.get(code="BU")
    response = client.post(
        f"/admin/annotation/task/{task.pk}/change/",
        {
            "code": "BU",
            "name": "Buoyancy and floating",
            "discipline": task.discipline_id,
            "kind": "ST",
            "description": "",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="task.changed")
    assert event.actor == admin_user and event.after["name"] == "Buoyancy and floating"
    client.post(f"/admin/auth/user/{annotator.pk}/delete/", {"post": "yes"})
    deleted = AuditEvent.objects.get(action="user.deleted")
    assert deleted.before["username"] == annotator.username and "password" not in deleted.before


# --- Paging a long log ---------------------------------------------------------------------


def test_the_page_counts_at_most_a_cap_of_events_and_says_there_are_more(client, admin_user, events, monkeypatch):
    monkeypatch.setattr("curation.paging.COUNT_CAP", 2)
    client.force_login(admin_user)
    body = client.get(reverse(PAGE)).content.decode()
    assert "more than 2 events" in body


def test_the_capped_paginator_counts_exactly_below_its_cap(admin_user, events):
    from curation.paging import CappedPaginator

    exact = CappedPaginator(AuditEvent.objects.order_by("-id"), 2, cap=10)
    assert (exact.count, exact.num_pages, exact.capped) == (3, 2, False)
    capped = CappedPaginator(AuditEvent.objects.order_by("-id"), 1, cap=2)
    assert (capped.count, capped.num_pages, capped.capped) == (2, 2, True)
    assert [e.id for e in capped.page(2)] == [events[1].id]

"""The schedules API under /api/ml/schedules/: admins only, CRUD, pause/resume, run now, errors per field."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from ml.models import Run, Schedule
from ml.services import schedules
from tests.support.schedules import beat_entry, crontab_of, generator, make_schedule, no_broker, template  # noqa: F401 (fixtures; no_broker is autouse)

pytestmark = pytest.mark.django_db

URL = "/api/ml/schedules/"


@pytest.fixture
def schedule(admin_user, generator):  # noqa: F811
    return make_schedule(admin_user, generator)


def endpoints(pk: int) -> list[tuple[str, str]]:
    return [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}{pk}/"),
        ("patch", f"{URL}{pk}/"),
        ("delete", f"{URL}{pk}/"),
        ("post", f"{URL}{pk}/pause/"),
        ("post", f"{URL}{pk}/resume/"),
        ("post", f"{URL}{pk}/fire/"),
    ]


@pytest.mark.parametrize("role", ["annotator", "reviewer", None])
def test_only_admins_may_use_any_endpoint(api, annotator, reviewer, schedule, role):
    user = {"annotator": annotator, "reviewer": reviewer}.get(role)
    if user:
        api.force_authenticate(user)
    for method, url in endpoints(schedule.pk):
        response = getattr(api, method)(url, {}, format="json")
        assert response.status_code == (403 if user else 401), (method, url)
    assert Schedule.objects.get(pk=schedule.pk).enabled and not Run.objects.exists()


def test_it_creates_lists_and_retrieves_a_schedule(api, admin_user, generator):  # noqa: F811
    api.force_authenticate(admin_user)
    response = api.post(
        URL,
        {
            "name": "nightly",
            "kind": "generate",
            "params": template(generator, steps=3),
            "trigger": "cron",
            "cron": "0 3 * * *",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    schedule = Schedule.objects.get(pk=body["id"])
    assert body["params"]["steps"] == 3 and body["params"]["guidance"] == 3.5
    assert body["trigger_description"] == "At 03:00 (UTC)"
    assert body["enabled"] is True and body["check_every_minutes"] == 10 and body["created_by"] == "boss"
    assert body["runs"] == [] and body["run_count"] == 0
    assert crontab_of(beat_entry(schedule)) == "0 3 * * *"

    api.post(
        URL,
        {
            "name": "on-data",
            "kind": "generate",
            "params": template(generator),
            "trigger": "data",
            "min_new_pairs": 20,
            "check_every_minutes": 5,
        },
        format="json",
    )
    listing = api.get(URL, {"page_size": 1}).json()
    assert listing["count"] == 2 and [s["name"] for s in listing["results"]] == ["nightly"]
    assert api.get(f"{URL}{schedule.pk}/").json()["name"] == "nightly"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"trigger": "data", "cron": None}, "min_new_pairs"),
        ({"kind": "paint"}, "kind"),
        ({"trigger": "sometimes"}, "trigger"),
        ({"params": "steps=2"}, "params"),
        ({"name": ""}, "name"),
    ],
)
def test_it_answers_400_with_the_field_at_fault(api, admin_user, generator, body, field):  # noqa: F811
    api.force_authenticate(admin_user)
    full = {"name": "x", "kind": "generate", "params": template(generator), "trigger": "cron", "cron": "0 3 * * *"}
    response = api.post(URL, {**full, **body}, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task=schedules.TASK).exists()


def test_params_errors_name_each_parameter(api, admin_user, generator):  # noqa: F811
    api.force_authenticate(admin_user)
    response = api.post(
        URL,
        {
            "name": "x",
            "kind": "generate",
            "params": template(generator, steps=0),
            "trigger": "cron",
            "cron": "0 3 * * *",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "between" in response.json()["params"]["steps"]


def test_it_edits_pauses_resumes_and_deletes(api, admin_user, schedule):
    api.force_authenticate(admin_user)
    assert api.post(f"{URL}{schedule.pk}/pause/").json()["enabled"] is False
    assert not beat_entry(schedule).enabled
    response = api.patch(f"{URL}{schedule.pk}/", {"cron": "15 4 * * 0"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["cron"] == "15 4 * * 0" and response.json()["enabled"] is False  # no defaults on PATCH
    assert crontab_of(beat_entry(schedule)) == "15 4 * * 0"
    response = api.patch(f"{URL}{schedule.pk}/", {"trigger": "data"}, format="json")
    assert response.status_code == 400 and "min_new_pairs" in response.json()
    assert api.post(f"{URL}{schedule.pk}/resume/").json()["enabled"] is True
    assert beat_entry(schedule).enabled
    assert api.put(f"{URL}{schedule.pk}/", {}, format="json").status_code == 405
    assert api.delete(f"{URL}{schedule.pk}/").status_code == 204
    assert api.get(f"{URL}{schedule.pk}/").status_code == 404
    assert not PeriodicTask.objects.filter(task=schedules.TASK).exists()


def test_run_now_starts_a_run_and_the_schedule_lists_its_runs(api, admin_user, schedule):
    api.force_authenticate(admin_user)
    response = api.post(f"{URL}{schedule.pk}/fire/")
    assert response.status_code == 202, response.json()
    first = response.json()
    assert first["status"] == "queued" and first["url"] == f"/ml/runs/{first['id']}/"
    busy = api.post(f"{URL}{schedule.pk}/fire/")
    assert busy.status_code == 409 and f"Run {first['id']}" in busy.json()["detail"]
    Run.objects.filter(pk=first["id"]).update(status=Run.Status.SUCCEEDED)
    second = api.post(f"{URL}{schedule.pk}/fire/").json()
    body = api.get(f"{URL}{schedule.pk}/").json()
    assert body["run_count"] == 2
    assert [(r["id"], r["status"]) for r in body["runs"]] == [(second["id"], "queued"), (first["id"], "succeeded")]
    assert Run.objects.get(pk=second["id"]).schedule_id == schedule.pk

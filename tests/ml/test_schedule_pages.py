"""The schedule pages under /ml/schedules/: admins only, the list, the form, pause/resume, run now, delete."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from ml.models import Run, Schedule
from ml.services import schedules
from ml.tasks import execute_run
from tests.support.schedules import beat_entry, crontab_of, generator, make_schedule, no_broker, template  # noqa: F401 (fixtures; no_broker is autouse)

pytestmark = pytest.mark.django_db


@pytest.fixture
def schedule(admin_user, generator):  # noqa: F811
    return make_schedule(admin_user, generator)


def pages(pk: int) -> list[tuple[str, str]]:
    gets = [
        reverse("ml-schedules:list"),
        reverse("ml-schedules:new"),
        reverse("ml-schedules:edit", args=[pk]),
        reverse("ml-schedules:delete", args=[pk]),
    ]
    posts = [
        reverse("ml-schedules:new"),
        reverse("ml-schedules:edit", args=[pk]),
        reverse("ml-schedules:delete", args=[pk]),
        reverse("ml-schedules:pause", args=[pk]),
        reverse("ml-schedules:resume", args=[pk]),
        reverse("ml-schedules:fire", args=[pk]),
    ]
    return [("get", url) for url in gets] + [("post", url) for url in posts]


def form_data(generator, **changes) -> dict:  # noqa: F811
    return {
        "name": "weekly",
        "kind": "generate",
        "trigger": "cron",
        "cron": "0 6 * * 1",
        "min_new_pairs": "",
        "check_every_minutes": "10",
        "params": json.dumps(template(generator)),
        "enabled": "on",
        **changes,
    }


def test_anonymous_users_are_sent_to_login(client, schedule):
    for method, url in pages(schedule.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_everyone_but_admins_gets_403(client, annotator, reviewer, schedule, role):
    client.force_login(annotator if role == "annotator" else reviewer)
    for method, url in pages(schedule.pk):
        assert getattr(client, method)(url).status_code == 403, (method, url)
    assert Schedule.objects.get(pk=schedule.pk).enabled and not Run.objects.exists()


def test_the_list_shows_each_schedule_with_its_trigger_and_last_run(client, admin_user, generator, schedule):  # noqa: F811
    make_schedule(admin_user, generator, name="on-data", trigger="data", min_new_pairs=25, enabled=False)
    run = schedules.run_now(admin_user, schedule, celery_task=execute_run)
    client.force_login(admin_user)
    html = client.get(reverse("ml-schedules:list")).content.decode()
    assert "At 03:00, Monday through Friday (UTC)" in html and "<code>0 3 * * 1-5</code>" in html
    assert "at least 25 newly confirmed pairs" in html and "paused" in html
    assert f'href="/ml/runs/{run.pk}/">run {run.pk}</a> queued' in html
    assert f'action="{reverse("ml-schedules:pause", args=[schedule.pk])}"' in html
    assert html.count("csrfmiddlewaretoken") >= 4


def test_the_new_form_is_prefilled_with_the_kind_defaults(client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("ml-schedules:new"))
    assert response.status_code == 200
    params = json.loads(response.context["form"].initial["params"])
    assert params["model"] is None and params["images_per_prompt"] == 1 and params["guidance"] == 3.5
    html = response.content.decode()
    assert 'id="kind-defaults"' in html and "&quot;images_per_prompt&quot;: 1" in html


def test_an_admin_creates_a_schedule(client, admin_user, generator):  # noqa: F811
    client.force_login(admin_user)
    response = client.post(reverse("ml-schedules:new"), form_data(generator))
    assert response.status_code == 302 and response["Location"] == reverse("ml-schedules:list")
    schedule = Schedule.objects.get(name="weekly")
    assert schedule.created_by == admin_user and schedule.params["steps"] == 28
    assert crontab_of(beat_entry(schedule)) == "0 6 * * 1"
    assert "Schedule weekly created." in client.get(reverse("ml-schedules:list")).content.decode()


@pytest.mark.parametrize(
    ("changes", "anchor", "message"),
    [
        ({"cron": "0 6 * *"}, "cron-error", "five fields"),
        ({"trigger": "data"}, "min-new-pairs-error", "required for a data trigger"),
        ({"params": "{not json"}, "params-error", "not valid JSON"),
        ({"params": "[1, 2]"}, "params-error", "must be a JSON object"),
        ({"params": json.dumps({"steps": 0})}, "params-error", "steps: must be between 1 and 200"),
    ],
)
def test_validation_errors_are_shown_next_to_their_field(
    client,
    admin_user,
    generator,  # noqa: F811
    changes,
    anchor,
    message,
):
    client.force_login(admin_user)
    response = client.post(reverse("ml-schedules:new"), form_data(generator, **changes))
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="{anchor}"' in html and message in html
    assert not Schedule.objects.exists()


def test_an_admin_edits_pauses_resumes_and_runs_a_schedule(client, admin_user, generator, schedule):  # noqa: F811
    client.force_login(admin_user)
    edit = reverse("ml-schedules:edit", args=[schedule.pk])
    form = client.get(edit).context["form"]
    assert form.initial["cron"] == "0 3 * * 1-5" and json.loads(form.initial["params"]) == schedule.params
    response = client.post(edit, form_data(generator, name="nightly", trigger="data", min_new_pairs="40"))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.trigger == "data" and schedule.min_new_pairs == 40 and beat_entry(schedule).crontab is None

    client.post(reverse("ml-schedules:pause", args=[schedule.pk]))
    assert not Schedule.objects.get(pk=schedule.pk).enabled and not beat_entry(schedule).enabled
    client.post(reverse("ml-schedules:resume", args=[schedule.pk]))
    assert Schedule.objects.get(pk=schedule.pk).enabled

    client.post(reverse("ml-schedules:fire", args=[schedule.pk]))
    run = Run.objects.get(schedule=schedule)
    response = client.post(reverse("ml-schedules:fire", args=[schedule.pk]), follow=True)
    assert f"Run {run.pk} of this schedule is still queued" in response.content.decode()
    assert Run.objects.count() == 1


def test_delete_asks_for_confirmation(client, admin_user, schedule):
    client.force_login(admin_user)
    url = reverse("ml-schedules:delete", args=[schedule.pk])
    page = client.get(url)
    assert page.status_code == 200 and "Delete schedule nightly?" in page.content.decode()
    assert Schedule.objects.exists()
    assert client.post(url).status_code == 302
    assert not Schedule.objects.exists()


def test_posts_need_the_csrf_token(admin_user, schedule):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("ml-schedules:pause", args=[schedule.pk])).status_code == 403
    assert Schedule.objects.get(pk=schedule.pk).enabled


def test_the_form_warns_that_a_fixed_seed_repeats_itself_and_documents_the_rotating_seed(
    client,
    admin_user,
    generator,  # noqa: F811
):
    client.force_login(admin_user)
    html = client.get(reverse("ml-schedules:new")).content.decode()
    assert '<div class="seed-warning" id="seed-warning" role="status">' in html  # generate, fixed seed: shown
    assert "&quot;rotate_seed&quot;: true (kinds with a seed) gives each firing its own seeds" in html  # help text
    assert "ml/schedules.js" in html and "<script>" not in html  # no inline script
    rotating = client.get(reverse("ml-schedules:new")).context["form"]
    assert rotating.fields["params"].help_text.count("rotate_seed") == 1
    refused = client.post(
        reverse("ml-schedules:new"), form_data(generator, params=json.dumps(template(generator)), cron="bad")
    )
    assert 'id="seed-warning" role="status">' in refused.content.decode()  # still warned after a refused post
    rotated = form_data(generator, name="rotating", params=json.dumps(template(generator, rotate_seed=True)), cron="x")
    not_warned = client.post(reverse("ml-schedules:new"), rotated).content.decode()
    assert 'id="seed-warning" role="status" hidden>' in not_warned
    created = client.post(reverse("ml-schedules:new"), {**rotated, "cron": "0 6 * * 1"})
    assert created.status_code == 302 and Schedule.objects.get(name="rotating").params["rotate_seed"] is True
    edit = client.get(reverse("ml-schedules:edit", args=[Schedule.objects.get(name="rotating").pk])).content.decode()
    assert 'id="seed-warning" role="status" hidden>' in edit and "&quot;rotate_seed&quot;: true" in edit
    trainer = client.get(reverse("ml-schedules:new"), {"kind": "train_scorer"}).content.decode()
    assert 'id="seed-warning" role="status" hidden>' in trainer  # only generate runs repeat themselves

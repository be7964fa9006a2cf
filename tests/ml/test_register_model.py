"""Registering real checkpoints without code changes: POST /api/ml/models/, ``manage.py register_model``,
and the Django admin actions that set a task's queue order."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import AuditEvent, Task
from curation.models import DatasetVersion
from ml.models import ModelVersion, PairScore
from ml.services import registry
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db

URL = "/api/ml/models/"


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


@pytest.fixture
def version(admin_user):
    return DatasetVersion.objects.create(name="v1", content_hash="0" * 64, created_by=admin_user)


@pytest.fixture
def base_scorer(admin_user):
    return registry.register_model(admin_user, "scorer", "sciscore-base", "/models/base")


@pytest.fixture
def generator(admin_user):
    return registry.register_model(admin_user, "generator_base", "flux-dev", "/models/flux-dev")


# --- API ---------------------------------------------------------------------------------------------------


def test_an_admin_registers_a_scorer_with_its_lineage_and_it_is_audited(admin_api, admin_user, base_scorer, version):
    response = admin_api.post(
        URL,
        {
            "kind": "scorer",
            "name": "sciscore-v2",
            "location": "/mnt/ckpt/sciscore-v2",
            "config": {"arch": "ViT-H-14"},
            "parent": base_scorer.pk,
            "dataset_version": version.pk,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    model = ModelVersion.objects.get(pk=body["id"])
    assert (model.kind, model.name, model.location) == ("scorer", "sciscore-v2", "/mnt/ckpt/sciscore-v2")
    assert model.config == {"arch": "ViT-H-14"} and model.created_by == admin_user and not model.is_active
    assert model.parent == base_scorer and model.dataset_version == version
    assert body["parent"]["id"] == base_scorer.pk and body["dataset_version"]["id"] == version.pk
    assert [m["id"] for m in body["lineage"]["ancestors"]] == [base_scorer.pk]
    assert body["lineage"]["dataset_version"]["id"] == version.pk
    event = AuditEvent.objects.get(action="model.registered", target_id=str(model.pk))
    assert event.actor == admin_user and event.target_type == "modelversion"
    assert event.after["parent"] == base_scorer.pk and event.after["dataset_version"] == version.pk


def test_the_location_need_not_exist_on_the_web_host(admin_api, generator):
    response = admin_api.post(
        URL,
        {
            "kind": "generator_lora",
            "name": "flux-sci-lora",
            "location": "/nowhere/on/this/host/lora",
            "parent": generator.pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["parent"]["id"] == generator.pk


def test_activate_makes_the_new_scorer_the_active_one(admin_api, admin_user, base_scorer):
    registry.activate_scorer(admin_user, base_scorer)
    response = admin_api.post(
        URL, {"kind": "scorer", "name": "sciscore-v3", "location": "/models/v3", "activate": True}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["is_active"] is True
    assert registry.active_scorer().pk == response.json()["id"]
    assert AuditEvent.objects.filter(action="model.scorer_activated", target_id=str(response.json()["id"])).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "teleporter", "name": "x", "location": "/models/x"}, "kind"),
        ({"kind": "scorer", "name": "x", "location": "models/x"}, "location"),
        ({"kind": "scorer", "name": "x", "location": "s3://bucket/x"}, "location"),
        ({"kind": "scorer", "name": "sciscore-base", "location": "/models/again"}, "name"),
        ({"kind": "generator_lora", "name": "orphan-lora", "location": "/models/lora"}, "parent"),
        ({"kind": "generator_base", "name": "flux-2", "location": "/models/flux-2", "activate": True}, "activate"),
        ({"kind": "scorer", "name": "x", "location": "/models/x", "parent": 999999}, "parent"),
        ({"kind": "scorer", "name": "x", "location": "/models/x", "dataset_version": 999999}, "dataset_version"),
        ({"kind": "scorer", "name": "x", "location": "/models/x", "config": ["not", "an", "object"]}, "config"),
        ({"kind": "scorer", "location": "/models/x"}, "name"),
    ],
    ids=[
        "bad-kind",
        "relative-location",
        "uri-location",
        "duplicate-name",
        "lora-without-parent",
        "activate-non-scorer",
        "unknown-parent",
        "unknown-dataset-version",
        "config-not-object",
        "no-name",
    ],
)
def test_bad_registrations_are_400_on_the_field_at_fault_and_register_nothing(admin_api, base_scorer, body, field):
    before = ModelVersion.objects.count()
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field], errors
    assert isinstance(errors[field], list) and errors[field]
    assert ModelVersion.objects.count() == before


def test_the_duplicate_name_message_says_it_is_already_registered(admin_api, base_scorer):
    response = admin_api.post(URL, {"kind": "scorer", "name": "sciscore-base", "location": "/models/b2"}, format="json")
    assert response.json() == {"name": ["A scorer named 'sciscore-base' is already registered."]}


def test_a_lora_whose_parent_is_a_scorer_is_refused_on_parent(admin_api, base_scorer):
    response = admin_api.post(
        URL,
        {"kind": "generator_lora", "name": "lora", "location": "/models/lora", "parent": base_scorer.pk},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"parent": ["A LoRA adapter needs a generator model as its parent."]}


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_admins_may_register_models(api, annotator, reviewer, role):
    api.force_authenticate(annotator if role == "annotator" else reviewer)
    response = api.post(URL, {"kind": "scorer", "name": "sneaky", "location": "/models/sneaky"}, format="json")
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_anonymous_registration_is_401(api, db):
    assert api.post(URL, {"kind": "scorer", "name": "x", "location": "/x"}, format="json").status_code == 401


# --- manage.py register_model --------------------------------------------------------------------------------


def _run(*args, **opts) -> str:
    out = StringIO()
    call_command("register_model", *args, stdout=out, **opts)
    return out.getvalue()


def test_the_command_registers_an_existing_checkpoint_and_prints_its_id(admin_user, tmp_path, base_scorer, version):
    checkpoint = tmp_path / "sciscore-v2"
    checkpoint.mkdir()
    out = _run(
        "scorer",
        "sciscore-v2",
        str(checkpoint),
        admin=admin_user.username,
        parent=base_scorer.pk,
        dataset_version=version.pk,
        config=json.dumps({"arch": "ViT-H-14"}),
    )

    model = ModelVersion.objects.get(kind="scorer", name="sciscore-v2")
    assert f"id {model.pk}" in out
    assert model.location == str(checkpoint) and model.config == {"arch": "ViT-H-14"}
    assert model.parent == base_scorer and model.dataset_version == version and model.created_by == admin_user
    assert not model.is_active
    assert AuditEvent.objects.filter(action="model.registered", target_id=str(model.pk), actor=admin_user).exists()


def test_the_command_activates_a_scorer_with_activate(admin_user, tmp_path, base_scorer):
    registry.activate_scorer(admin_user, base_scorer)
    checkpoint = tmp_path / "scorer.pt"  # a bare checkpoint file is fine too
    checkpoint.write_bytes(b"weights")
    out = _run("scorer", "sciscore-v3", str(checkpoint), admin=admin_user.username, activate=True)

    model = ModelVersion.objects.get(name="sciscore-v3")
    assert registry.active_scorer() == model
    assert "active scorer" in out and f"id {model.pk}" in out


def test_the_command_refuses_a_location_missing_on_this_machine(admin_user, tmp_path):
    with pytest.raises(CommandError, match="does not exist on this machine.*--no-check"):
        _run("scorer", "ghost", str(tmp_path / "missing"), admin=admin_user.username)
    assert not ModelVersion.objects.exists()


def test_no_check_registers_a_location_only_the_workers_see(admin_user, tmp_path):
    out = _run("generator_base", "flux-dev", str(tmp_path / "on-the-workers"), admin=admin_user.username, no_check=True)
    model = ModelVersion.objects.get(name="flux-dev")
    assert model.location == str(tmp_path / "on-the-workers") and f"id {model.pk}" in out


@pytest.mark.parametrize(
    ("args", "opts", "message"),
    [
        (("scorer", "x", "relative/path"), {"no_check": True}, "absolute path"),
        (("scorer", "x", "/x"), {"no_check": True, "config": "{oops"}, "--config is not valid JSON"),
        (("scorer", "x", "/x"), {"no_check": True, "config": "[1]"}, "--config must be a JSON object"),
        (("scorer", "x", "/x"), {"no_check": True, "parent": 999999}, "--parent 999999: no model"),
        (("scorer", "x", "/x"), {"no_check": True, "dataset_version": 999999}, "--dataset-version 999999"),
        (("generator_base", "x", "/x"), {"no_check": True, "activate": True}, "--activate is for scorers only"),
        (("generator_lora", "x", "/x"), {"no_check": True}, "LoRA adapter needs a generator model"),
        (("teleporter", "x", "/x"), {"no_check": True}, "invalid choice"),
    ],
    ids=[
        "relative",
        "bad-json",
        "config-not-object",
        "unknown-parent",
        "unknown-version",
        "activate-non-scorer",
        "lora-without-parent",
        "bad-kind",
    ],
)
def test_the_command_refuses_bad_input_with_a_clear_message(admin_user, args, opts, message):
    with pytest.raises(CommandError, match=message):
        _run(*args, admin=admin_user.username, **opts)
    assert not ModelVersion.objects.exists()


def test_the_command_refuses_a_duplicate_name(admin_user, base_scorer):
    with pytest.raises(CommandError, match="already registered"):
        _run("scorer", "sciscore-base", "/models/again", admin=admin_user.username, no_check=True)


def test_the_command_needs_an_admin_account(reviewer):
    with pytest.raises(CommandError, match="No admin account 'rev'"):
        _run("scorer", "x", "/x", admin=reviewer.username, no_check=True)
    with pytest.raises(CommandError, match="No admin account 'nobody'"):
        _run("scorer", "x", "/x", admin="nobody", no_check=True)
    assert not ModelVersion.objects.exists()


# --- Django admin: queue order actions -----------------------------------------------------------------------


def _post_action(client, action: str, tasks):
    return client.post(
        reverse("admin:annotation_task_changelist"), {"action": action, "_selected_action": [t.pk for t in tasks]}
    )


def test_the_admin_action_sets_the_queue_order_of_the_selected_tasks_and_is_audited(client, admin_user):
    scorer = registry.activate_scorer(admin_user, registry.register_model(admin_user, "scorer", "s", "/models/s"))
    pair = make_pair("RU", k=1)
    PairScore.objects.create(
        pair=pair, model=scorer, score_correct=20.0, score_wrong=20.0, probability=0.7, uncertainty=0.6, disagrees=False
    )
    ru, bu, me = (Task.objects.get(code=code) for code in ("RU", "BU", "ME"))
    client.force_login(admin_user)

    response = _post_action(client, "order_queue_by_uncertainty", [ru, bu])

    assert response.status_code == 302
    assert {t.code: t.queue_order for t in Task.objects.filter(code__in=["RU", "BU", "ME"])} == {
        "RU": "uncertainty",
        "BU": "uncertainty",
        "ME": me.queue_order,
    }
    pair.refresh_from_db()
    assert pair.priority == pytest.approx(0.6)  # priorities were recomputed
    events = AuditEvent.objects.filter(action="task.queue_order_changed", actor=admin_user)
    assert {e.target_id for e in events} == {str(ru.pk), str(bu.pk)}
    assert all(e.before == {"queue_order": "created"} and e.after == {"queue_order": "uncertainty"} for e in events)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("BU, RU" in m and "scorer uncertainty" in m for m in shown), shown


@pytest.mark.parametrize("action", ["order_queue_by_created", "order_queue_by_disagreement"])
def test_every_queue_order_has_an_admin_action(client, admin_user, action):
    Task.objects.filter(code="RU").update(queue_order="uncertainty")
    client.force_login(admin_user)
    assert _post_action(client, action, [Task.objects.get(code="RU")]).status_code == 302
    assert Task.objects.get(code="RU").queue_order == action.removeprefix("order_queue_by_")
    assert AuditEvent.objects.filter(action="task.queue_order_changed").count() == 1


def test_the_admin_warns_when_no_scorer_is_active(client, admin_user):
    client.force_login(admin_user)
    response = _post_action(client, "order_queue_by_disagreement", [Task.objects.get(code="RU")])
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("No scorer is active" in m for m in shown), shown


def test_the_changelist_offers_the_three_queue_order_actions(client, admin_user):
    client.force_login(admin_user)
    html = client.get(reverse("admin:annotation_task_changelist")).content.decode()
    for label in (
        "Order the queue by creation",
        "Order the queue by scorer uncertainty",
        "Order the queue by scorer disagreement",
    ):
        assert label in html

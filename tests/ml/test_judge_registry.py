"""Registering LMM judges (kind ``judge``): local and endpoint, through the API, the command and the browser's
form, with the config rules of ml/services/judges.py (secrets refused, URLs checked, defaults filled in)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from annotation.models import AuditEvent
from ml.models import ModelVersion
from ml.services import judges, registry

pytestmark = pytest.mark.django_db

URL = "/api/ml/models/"


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def test_an_endpoint_judge_is_registered_by_url_with_its_defaults_and_no_key(admin_api):
    response = admin_api.post(
        URL,
        {
            "kind": "judge",
            "name": "qwen2-vl-7b@vllm",
            "location": "http://gpu-3:8000/v1",
            "config": {"backend": "endpoint", "model": "Qwen/Qwen2-VL-7B-Instruct", "api_key_env": "JUDGE_API_KEY"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    model = ModelVersion.objects.get(name="qwen2-vl-7b@vllm")
    assert model.kind == "judge" and model.location == "http://gpu-3:8000/v1"
    assert model.config == {
        "backend": "endpoint",
        "model": "Qwen/Qwen2-VL-7B-Instruct",
        "api_key_env": "JUDGE_API_KEY",
        "max_concurrency": 4,
        "timeout": 60.0,
        "max_retries": 3,
        "request_budget": None,
    }
    assert AuditEvent.objects.filter(action="model.registered", target_id=str(model.pk)).exists()


def test_a_local_judge_needs_an_absolute_path(admin_api):
    ok = admin_api.post(
        URL, {"kind": "judge", "name": "tiny", "location": "/models/tiny-qwen", "config": {"backend": "local"}}, "json"
    )
    assert ok.status_code == 201
    assert ModelVersion.objects.get(name="tiny").config == {
        "backend": "local",
        "batch_size": 8,
        "dtype": "auto",
    }
    relative = admin_api.post(
        URL, {"kind": "judge", "name": "t2", "location": "models/x", "config": {"backend": "local"}}, "json"
    )
    assert relative.status_code == 400 and "location" in relative.json()
    url_for_local = admin_api.post(
        URL, {"kind": "judge", "name": "t3", "location": "http://h/v1", "config": {"backend": "local"}}, "json"
    )
    assert url_for_local.status_code == 400 and "location" in url_for_local.json()


@pytest.mark.parametrize(
    ("location", "config", "field", "words"),
    [
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "api_key": "sk-123"}, "config", "secret"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "token": "abc"}, "config", "secret"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "Auth-Token": "abc"}, "config", "secret"),
        ("http://user:pw@h:8000/v1", {"backend": "endpoint", "model": "m"}, "location", "credentials"),
        ("http://h:8000/v1?key=1", {"backend": "endpoint", "model": "m"}, "location", "query"),
        ("ftp://h/v1", {"backend": "endpoint", "model": "m"}, "location", "http"),
        ("http://h:8000/v1", {"backend": "endpoint"}, "config", "model"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "api_key_env": "not a name"}, "config", "variable"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "max_concurrency": 0}, "config", "between"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "max_retries": 1.5}, "config", "integer"),
        ("http://h:8000/v1", {"backend": "endpoint", "model": "m", "batch_size": 4}, "config", "Unknown"),
        ("/models/x", {"backend": "remote"}, "config", "backend"),
        ("/models/x", {}, "config", "backend"),
    ],
)
def test_a_bad_judge_config_is_refused_on_its_field_and_nothing_is_stored(admin_api, location, config, field, words):
    response = admin_api.post(URL, {"kind": "judge", "name": "bad", "location": location, "config": config}, "json")
    assert response.status_code == 400
    errors = response.json()
    assert field in errors and words in errors[field][0], errors
    assert not ModelVersion.objects.filter(name="bad").exists()
    assert "sk-123" not in str(AuditEvent.objects.values_list("after", flat=True))


def test_the_command_registers_an_endpoint_judge_without_a_path_check(admin_user, capsys):
    call_command(
        "register_model",
        "judge",
        "remote-judge",
        "https://judge.example/v1",
        "--config",
        '{"backend": "endpoint", "model": "llava-onevision-7b", "request_budget": 5000}',
        "--admin",
        admin_user.username,
    )
    model = ModelVersion.objects.get(name="remote-judge")
    assert model.config["request_budget"] == 5000
    with pytest.raises(CommandError, match="secret"):
        call_command(
            "register_model",
            "judge",
            "leaky",
            "https://judge.example/v1",
            "--config",
            '{"backend": "endpoint", "model": "m", "password": "x"}',
            "--admin",
            admin_user.username,
        )


def test_an_admin_registers_a_judge_from_the_browser_and_sees_the_errors(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/ml/models/new/?kind=judge")
    assert page.status_code == 200 and b'name="config"' in page.content
    bad = client.post(
        "/ml/models/new/",
        {"kind": "judge", "name": "j", "location": "http://h:1/v1", "config": '{"backend": "endpoint"}'},
    )
    assert bad.status_code == 200 and b"config-error" in bad.content
    assert not ModelVersion.objects.filter(name="j").exists()
    not_json = client.post("/ml/models/new/", {"kind": "judge", "name": "j", "location": "/m", "config": "{oops"})
    assert b"Not valid JSON" in not_json.content
    good = client.post(
        "/ml/models/new/",
        {"kind": "judge", "name": "j", "location": "http://h:1/v1", "config": '{"backend": "endpoint", "model": "m"}'},
    )
    model = ModelVersion.objects.get(name="j")
    assert good.status_code == 302 and good["Location"] == f"/ml/models/{model.pk}/"


def test_a_judge_cannot_be_the_active_scorer_or_a_scorers_parent(admin_user):
    judge = registry.register_model(admin_user, "judge", "j", "/models/j", config={"backend": "local"})
    with pytest.raises(ValueError, match="Only a scorer"):
        registry.activate_scorer(admin_user, judge)
    with pytest.raises(ValueError, match="scorer's parent"):
        registry.register_model(admin_user, "scorer", "s", "/models/s", parent=judge)


def test_the_backend_reads_the_key_from_the_named_variable_never_from_the_database(admin_user, monkeypatch):
    judge = registry.register_model(
        admin_user,
        "judge",
        "e",
        "http://127.0.0.1:9/v1",
        config={"backend": "endpoint", "model": "m", "api_key_env": "SCIT2I_TEST_JUDGE_KEY", "request_budget": 50},
    )
    monkeypatch.delenv("SCIT2I_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="SCIT2I_TEST_JUDGE_KEY"):
        judges.open_backend(judge)
    monkeypatch.setenv("SCIT2I_TEST_JUDGE_KEY", "sk-secret")
    backend = judges.open_backend(judge, request_budget=10)
    assert backend.request_budget == 10  # the smaller of the run's and the judge's
    assert "sk-secret" not in repr(backend) and "sk-secret" not in str(backend.__dict__.get("name", ""))

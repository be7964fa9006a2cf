"""The runs and model-registry API under /api/ml/: admins only, start/cancel runs, lineage, activate, compare."""

from __future__ import annotations

from unittest import mock

import pytest

from ml.models import ModelVersion, Run
from ml.services import registry
from ml.services.runs import kinds as runs_kinds
from tests.support.factories import TupleFactory, make_image
from tests.support.ml_registry_data import registry_world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker():
    """Runs are queued in the database only; nothing is sent to a broker."""
    with mock.patch("ml.tasks.execute_run.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def world(admin_user):
    return registry_world(admin_user)


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def endpoints(world) -> list[tuple[str, str]]:
    run, model, image = world.failed.pk, world.tuned.pk, world.image.pk
    return [
        ("get", "/api/ml/runs/"),
        ("post", "/api/ml/runs/"),
        ("get", f"/api/ml/runs/{run}/"),
        ("post", f"/api/ml/runs/{run}/cancel/"),
        ("get", "/api/ml/run-kinds/"),
        ("get", "/api/ml/models/"),
        ("get", f"/api/ml/models/{model}/"),
        ("post", f"/api/ml/models/{model}/activate/"),
        ("get", f"/api/ml/models/compare/?a={world.base.pk}&b={model}"),
        ("get", f"/api/ml/images/{image}/origin/"),
    ]


def test_anonymous_requests_get_401(api, world):
    for method, url in endpoints(world):
        assert getattr(api, method)(url).status_code == 401, (method, url)


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_everyone_but_admins_gets_403(api, annotator, reviewer, world, role):
    api.force_authenticate(annotator if role == "annotator" else reviewer)
    for method, url in endpoints(world):
        assert getattr(api, method)(url, {}, format="json").status_code == 403, (method, url)
    assert not ModelVersion.objects.filter(is_active=True).exists()
    assert Run.objects.filter(status="cancelled").count() == 0


def test_an_admin_starts_a_run_with_defaults(admin_api, world, no_broker, django_capture_on_commit_callbacks):
    tuples = [TupleFactory().pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(
            "/api/ml/runs/",
            {"kind": "generate", "params": {"model": world.generator.pk, "tuples": tuples, "steps": 2}},
            format="json",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.status == "queued" and body["status"] == "queued" and body["url"] == f"/ml/runs/{run.pk}/"
    assert body["params"]["steps"] == 2 and body["params"]["guidance"] == 3.5 and body["params"]["tuples"] == tuples
    assert body["input_model"]["id"] == world.generator.pk
    no_broker.assert_called_once()
    assert no_broker.call_args.kwargs["queue"] == "gpu"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"kind": "generate", "params": {"steps": 0, "tuples": {"task": "RU"}}},
            {"params": {"steps": ["must be between 1 and 200"], "model": mock.ANY}},
        ),
        (
            {"kind": "generate", "params": {"model": 999999, "tuples": [1], "colour": "red"}},
            {
                "params": {
                    "params": ["unknown parameters: colour"],
                    "model": ["no registered model 999999"],
                    "tuples": mock.ANY,
                }
            },
        ),
        ({"kind": "teleport", "params": {}}, {"kind": [mock.ANY]}),
        ({"params": {}}, {"kind": ["This field is required."]}),
    ],
)
def test_bad_kinds_and_params_are_400_with_errors_per_field(admin_api, world, body, errors):
    response = admin_api.post("/api/ml/runs/", body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert not Run.objects.filter(status="queued").exists()


def test_the_list_filters_and_paginates(admin_api, world):
    body = admin_api.get("/api/ml/runs/").json()
    assert body["count"] == 4 and {"next", "previous", "results"} <= set(body)
    assert [r["id"] for r in body["results"]][0] == world.failed.pk  # latest first
    assert [r["id"] for r in admin_api.get("/api/ml/runs/?status=failed").json()["results"]] == [world.failed.pk]
    kinds = {r["kind"] for r in admin_api.get("/api/ml/runs/?kind=generate").json()["results"]}
    assert kinds == {"generate"}
    polled = admin_api.get(f"/api/ml/runs/?ids={world.trained.pk},{world.failed.pk}").json()["results"]
    assert sorted(r["id"] for r in polled) == sorted([world.trained.pk, world.failed.pk])
    assert "log_tail" not in polled[0]
    Run.objects.filter(pk=world.trained.pk).update(phase="loading the model")
    phases = {r["id"]: r["phase"] for r in admin_api.get(f"/api/ml/runs/?ids={world.trained.pk}").json()["results"]}
    assert phases == {world.trained.pk: "loading the model"}, "the list carries what the worker is doing"
    assert admin_api.get("/api/ml/runs/?status=lost").status_code == 400
    assert admin_api.get("/api/ml/runs/?ids=1,x").status_code == 400


def test_the_detail_has_log_metrics_plots_artifacts_and_the_traceback(admin_api, world):
    failed = admin_api.get(f"/api/ml/runs/{world.failed.pk}/").json()
    assert failed["error"].startswith("ValueError: no tuples were selected") and "Traceback" in failed["error"]
    assert failed["log_tail"].endswith("no tuples were selected")
    trained = admin_api.get(f"/api/ml/runs/{world.trained.pk}/").json()
    assert trained["metrics"][1]["loss"] == 0.4 and trained["output_model"]["name"] == "sciscore-v1"
    plots = {p["name"]: p for p in trained["plots"]}
    assert plots["loss"]["x"] == "step"
    assert plots["loss"]["series"] == [{"name": "loss", "points": [[10, 0.7], [20, 0.4]]}]
    assert [s["name"] for s in plots["val_by_task"]["series"]] == ["BU", "RU"]
    generated = admin_api.get(f"/api/ml/runs/{world.generated.pk}/").json()
    assert generated["artifacts"]["images"][0]["image"] == world.image.pk


def test_cancel_a_queued_run_then_409(admin_api, admin_user, world):
    run = Run.objects.create(kind="generate", created_by=admin_user)
    response = admin_api.post(f"/api/ml/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert Run.objects.get(pk=run.pk).status == "cancelled"
    again = admin_api.post(f"/api/ml/runs/{run.pk}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_run_kinds_describe_their_parameters(admin_api, world):
    kinds = {k["kind"]: k for k in admin_api.get("/api/ml/run-kinds/").json()}
    generate = kinds["generate"]
    assert generate["label"] == "generate candidates"
    fields = {f["name"]: f for f in generate["fields"]}
    assert fields["model"]["ref"] == "model" and fields["model"]["model_kinds"] == ["generator_base", "generator_lora"]
    assert fields["steps"] == {"name": "steps", "type": "int", "default": 28, "minimum": 1, "maximum": 200}
    assert fields["seed"]["maximum"] == 2**62  # exact, not a float
    assert {kind: [f["name"] for f in k["fields"]] for kind, k in kinds.items()} == {
        kind: [f["name"] for f in runs_kinds.describe(kind)] for kind in runs_kinds.available()
    }


def test_models_list_and_filter(admin_api, world):
    body = admin_api.get("/api/ml/models/").json()
    assert body["count"] == 4
    scorers = admin_api.get("/api/ml/models/?kind=scorer").json()["results"]
    assert {m["name"] for m in scorers} == {"sciscore-base", "sciscore-v1", "sciscore-v2"}
    tuned = next(m for m in scorers if m["name"] == "sciscore-v1")
    assert tuned["parent"]["id"] == world.base.pk
    assert tuned["dataset_version"] == {
        "id": world.version.pk,
        "name": "v1",
        "url": f"/curation/versions/{world.version.pk}/",
    }


def test_model_lineage_goes_both_ways(admin_api, world):
    lineage = admin_api.get(f"/api/ml/models/{world.child.pk}/").json()["lineage"]
    assert [m["name"] for m in lineage["ancestors"]] == ["sciscore-v1", "sciscore-base"]
    assert lineage["dataset_version"]["id"] == world.version.pk  # inherited from the parent
    tuned = admin_api.get(f"/api/ml/models/{world.tuned.pk}/").json()["lineage"]
    assert [r["id"] for r in tuned["produced_by"]] == [world.trained.pk]
    assert [r["id"] for r in tuned["used_by"]] == [world.evaluated.pk]
    assert [m["id"] for m in tuned["children"]] == [world.child.pk]
    base = admin_api.get(f"/api/ml/models/{world.base.pk}/").json()["lineage"]
    assert base["ancestors"] == [] and base["dataset_version"] is None
    assert [r["id"] for r in base["used_by"]] == [world.trained.pk]


def test_activate_a_scorer_and_refuse_other_kinds(admin_api, world):
    registry.activate_scorer(world.base.created_by, world.base)
    response = admin_api.post(f"/api/ml/models/{world.tuned.pk}/activate/")
    assert response.status_code == 200 and response.json()["is_active"]
    assert list(ModelVersion.objects.filter(is_active=True)) == [world.tuned]
    refused = admin_api.post(f"/api/ml/models/{world.generator.pk}/activate/")
    assert refused.status_code == 400 and "Only a scorer" in refused.json()["detail"]


def test_compare_two_scorers_per_split_and_task(admin_api, world):
    body = admin_api.get(f"/api/ml/models/compare/?a={world.base.pk}&b={world.tuned.pk}").json()
    assert (body["a"]["id"], body["b"]["id"]) == (world.base.pk, world.tuned.pk)
    splits = {row["split"]: row for row in body["splits"]}
    assert list(splits) == ["validation", "test_S", "test_C"]
    validation = splits["validation"]
    assert validation["overall"] == {"a": 0.6, "b": 0.8, "diff": pytest.approx(0.2)}
    tasks = {row["task"]: row for row in validation["tasks"]}
    assert tasks["RU"] == {"task": "RU", "a": 0.5, "b": 0.9, "diff": pytest.approx(0.4)}
    assert tasks["BU"] == {"task": "BU", "a": 0.7, "b": None, "diff": None}
    assert splits["test_S"]["overall"] == {"a": 0.55, "b": None, "diff": None}
    assert splits["test_C"]["tasks"] == [{"task": "FR", "a": None, "b": 0.6, "diff": None}]


@pytest.mark.parametrize("query", ["", "?a=1", "?a=x&b=2", "generator"])
def test_compare_needs_two_scorers(admin_api, world, query):
    if query == "generator":
        query = f"?a={world.base.pk}&b={world.generator.pk}"
    assert admin_api.get(f"/api/ml/models/compare/{query}").status_code == 400


def test_image_origin(admin_api, world):
    body = admin_api.get(f"/api/ml/images/{world.image.pk}/origin/").json()
    assert body["run"]["id"] == world.generated.pk and body["model"]["id"] == world.generator.pk
    assert body["generator"] == f"run:{world.generated.pk}:tiny-flux" and body["seed"] == 7
    uploaded = admin_api.get(f"/api/ml/images/{make_image().pk}/origin/").json()
    assert uploaded["run"] is None and uploaded["model"] is None
    assert admin_api.get("/api/ml/images/999999/origin/").status_code == 404


def test_the_schema_documents_the_endpoints(admin_api):
    paths = admin_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in [
        "/api/ml/runs/",
        "/api/ml/runs/{id}/",
        "/api/ml/runs/{id}/cancel/",
        "/api/ml/run-kinds/",
        "/api/ml/models/",
        "/api/ml/models/{id}/",
        "/api/ml/models/{id}/activate/",
        "/api/ml/models/compare/",
        "/api/ml/images/{id}/origin/",
    ]:
        assert path in paths, path


def test_metric_plots_take_any_numeric_series():
    from ml.queries import MAX_POINTS, metric_plots

    plots = metric_plots(
        [
            {"loss": 1.0, "note": "warm-up", "ok": True},
            {"loss": float("nan")},
            "junk",
            {"loss": 0.5, "by_task": {"RU": {"accuracy": 0.8, "n": 4}}},
        ]
    )
    assert plots == [
        {"name": "loss", "x": "record", "series": [{"name": "loss", "points": [[0.0, 1.0], [2.0, 0.5]]}]},
        {"name": "by_task", "x": "record", "series": [{"name": "RU", "points": [[2.0, 0.8]]}]},
    ]
    long = metric_plots([{"step": i, "loss": 1 / (i + 1)} for i in range(3 * MAX_POINTS + 1)])
    points = long[0]["series"][0]["points"]
    assert len(points) <= MAX_POINTS + 1 and points[0][0] == 0 and points[-1][0] == 3 * MAX_POINTS
    assert metric_plots(None) == [] and metric_plots({"loss": 1}) == []


def test_compare_copes_with_odd_metrics(admin_user):
    from ml.queries import compare_scorers

    a = registry.register_model(admin_user, "scorer", "odd", "/m/odd", metrics={"validation": 0.5, "test_S": "n/a"})
    b = registry.register_model(admin_user, "scorer", "bare", "/m/bare")
    rows = {row["split"]: row for row in compare_scorers(a, b)}
    assert rows["validation"] == {"split": "validation", "overall": {"a": 0.5, "b": None, "diff": None}, "tasks": []}
    assert rows["test_S"]["overall"] == {"a": None, "b": None, "diff": None}

"""Runs and the model registry: parameter validation, permissions, state transitions, redelivery."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from annotation.models import AuditEvent, PromptTuple, Task
from curation.models import DatasetVersion
from ml.models import ModelVersion, Run
from ml.services import registry, runs
from ml.services.runs import kinds
from ml.tasks import execute_run
from tests.support.factories import TupleFactory, make_image
from tests.support.runs import queued_run


@pytest.fixture
def base_model(admin_user):
    return registry.register_model(admin_user, "generator_base", "tiny-flux", "/models/tiny-flux")


@pytest.fixture
def tuples(db):
    return [TupleFactory(), TupleFactory()]


def _params(model, tuples, **extra):
    return {"model": model.pk, "tuples": [t.pk for t in tuples], **extra}


# --- validation -----------------------------------------------------------------------------


def test_generate_params_are_cleaned_with_defaults(admin_user, base_model, tuples):
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, "generate", _params(base_model, tuples, steps=2), celery_task=execute_run)
    assert run.status == Run.Status.QUEUED
    assert run.input_model == base_model
    assert run.params == {
        "model": base_model.pk,
        "tuples": [t.pk for t in tuples],
        "images_per_prompt": 1,
        "steps": 2,
        "guidance": 3.5,
        "width": 512,
        "height": 512,
        "seed": 0,
        "batch_size": 4,
        "include_implicit": False,
    }
    assert AuditEvent.objects.filter(action="run.started", target_id=str(run.pk)).exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"steps": 0}, "steps", "between"),
        ({"steps": "3"}, "steps", "integer"),
        ({"guidance": "x"}, "guidance", "number"),
        ({"include_implicit": 1}, "include_implicit", "true or false"),
        ({"colour": "red"}, "params", "unknown parameters: colour"),
        ({"model": None}, "model", "registered model id or a pipeline path"),
        ({"model": 999999}, "model", "no registered model"),
        ({"tuples": []}, "tuples", "non-empty"),
        ({"tuples": [999999]}, "tuples", "no tuples"),
        ({"tuples": {"task": "NOPE"}}, "tuples", "no task"),
        ({"tuples": {"task": "RU", "limit": 0}}, "tuples", "limit"),
        ({"tuples": "all"}, "tuples", "must be a list"),
    ],
)
def test_generate_params_are_validated(admin_user, base_model, tuples, change, field, message):
    with pytest.raises(runs.RunParamsError) as caught:
        runs.start_run(admin_user, "generate", {**_params(base_model, tuples), **change}, celery_task=execute_run)
    assert message in caught.value.errors[field]
    assert not Run.objects.exists()


def test_model_must_be_a_generator_and_tuples_need_both_prompts(admin_user, tuples):
    scorer = registry.register_model(admin_user, "scorer", "s1", "/models/s1")
    with pytest.raises(runs.RunParamsError, match="not a generator"):
        runs.start_run(admin_user, "generate", _params(scorer, tuples), celery_task=execute_run)
    base = registry.register_model(admin_user, "generator_base", "b", "/models/b")
    bare = TupleFactory(superficial_prompt="")
    with pytest.raises(runs.RunParamsError, match="lack an explicit or superficial prompt"):
        runs.start_run(admin_user, "generate", _params(base, [bare]), celery_task=execute_run)


def test_missing_params_and_pipeline_path(admin_user, tuples):
    with pytest.raises(runs.RunParamsError) as caught:
        runs.start_run(admin_user, "generate", {}, celery_task=execute_run)
    assert set(caught.value.errors) == {"model", "tuples"}
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(
            admin_user, "generate", {"model": "/ckpt/FLUX.1-dev", "tuples": {"task": "RU"}}, celery_task=execute_run
        )
    assert run.input_model is None and run.params["model"] == "/ckpt/FLUX.1-dev"
    assert run.params["tuples"] == {"task": "RU", "limit": 100}


def test_every_kind_of_the_issue_is_available():
    assert set(kinds.available()) == {
        "generate",
        "train_scorer",
        "sft",
        "oft",
        "eval_scorer",
        "eval_generator",
        "score_pairs",
        "eval_judge",
        "judge_pairs",
    }


def test_a_kind_without_validator_is_refused(admin_user, monkeypatch):
    monkeypatch.delitem(kinds.VALIDATORS, "sft")
    with pytest.raises(ValueError, match="not available yet"):
        runs.start_run(admin_user, "sft", {}, celery_task=execute_run)


def test_unknown_kind(admin_user):
    with pytest.raises(runs.RunParamsError, match="must be one of"):
        runs.start_run(admin_user, "paint", {}, celery_task=execute_run)


# --- permissions and enqueueing -------------------------------------------------------------


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_only_admins_start_runs_and_register_models(request, who, base_model, tuples):
    user = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        runs.start_run(user, "generate", _params(base_model, tuples), celery_task=execute_run)
    with pytest.raises(PermissionDenied):
        registry.register_model(user, "scorer", "x", "/x")
    with pytest.raises(PermissionDenied):
        registry.activate_scorer(user, base_model)
    assert not Run.objects.exists()


def test_start_enqueues_on_the_gpu_queue_after_commit(
    admin_user, base_model, tuples, django_capture_on_commit_callbacks
):
    with mock.patch("ml.tasks.execute_run.apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = runs.start_run(admin_user, "generate", _params(base_model, tuples), celery_task=execute_run)
        apply_async.assert_not_called()  # nothing is sent before the row is committed
        for callback in callbacks:
            callback()
    apply_async.assert_called_once_with(args=[run.pk], task_id=run.celery_task_id, queue="gpu")


def test_ml_tasks_are_routed_to_the_gpu_queue():
    from config.celery import app

    route = app.amqp.router.route({}, "ml.tasks.execute_run")
    assert route["queue"].name == "gpu"


# --- execution ------------------------------------------------------------------------------


def test_a_run_goes_queued_running_succeeded(admin_user, monkeypatch):
    seen = {}

    def handler(run, ctx):
        seen["status"] = Run.objects.get(pk=run.pk).status
        ctx.log("half way")
        ctx.progress(0.5)
        seen["progress"] = Run.objects.get(pk=run.pk).progress
        ctx.metric({"step": 1, "loss": 0.5})
        run.artifacts["x"] = 1
        ctx.save_artifacts()

    monkeypatch.setitem(runs.HANDLERS, "generate", handler)
    run = runs.execute_run(queued_run(admin_user).pk, worker="gpu-7")
    assert seen == {"status": "running", "progress": 0.5}
    assert run.status == Run.Status.SUCCEEDED
    assert run.progress == 1.0 and run.worker == "gpu-7"
    assert run.started_at and run.finished_at and run.started_at <= run.finished_at
    assert run.metrics == [{"step": 1, "loss": 0.5}] and run.artifacts == {"x": 1}
    assert "half way" in run.log_tail and run.log_tail.splitlines()[-1].endswith("succeeded")
    assert run.error == ""


def test_a_failure_stores_the_traceback(admin_user, monkeypatch):
    def handler(run, ctx):
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setitem(runs.HANDLERS, "generate", handler)
    run = runs.execute_run(queued_run(admin_user).pk)
    assert run.status == Run.Status.FAILED and run.finished_at
    assert run.error.startswith("RuntimeError: CUDA out of memory (pretend)")
    assert "Traceback (most recent call last)" in run.error and "in handler" in run.error
    assert "failed: RuntimeError" in run.log_tail


def test_a_kind_without_handler_fails_clearly(admin_user, monkeypatch):
    monkeypatch.delitem(runs.HANDLERS, "sft")
    run = runs.execute_run(queued_run(admin_user, kind="sft").pk)
    assert run.status == Run.Status.FAILED and "sft runs are not available yet" in run.error


def test_a_redelivered_finished_run_is_left_alone(admin_user, monkeypatch):
    calls = []
    monkeypatch.setitem(runs.HANDLERS, "generate", lambda run, ctx: calls.append(run.pk))
    run = runs.execute_run(queued_run(admin_user).pk, worker="w1")
    again = runs.execute_run(run.pk, worker="w2")
    assert calls == [run.pk]
    assert again.status == Run.Status.SUCCEEDED and again.worker == "w1" and again.log_tail == run.log_tail


def test_a_redelivered_running_run_resumes(admin_user, monkeypatch):
    """A worker died mid-run: the row is still running, and the next delivery carries on."""
    run = queued_run(admin_user)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, worker="dead", log_tail="old line")
    monkeypatch.setitem(runs.HANDLERS, "generate", lambda run, ctx: None)
    run = runs.execute_run(run.pk, worker="alive")
    assert run.status == Run.Status.SUCCEEDED and run.worker == "alive"
    assert run.log_tail.startswith("old line") and "resumed generate run" in run.log_tail


def test_a_redelivery_of_a_run_alive_elsewhere_is_refused_as_busy(admin_user, monkeypatch):
    """A broker handed the message out again while the first worker still beats: do not run it twice."""
    from django.utils import timezone

    run = queued_run(admin_user)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, worker="w1", heartbeat_at=timezone.now())
    called = []
    monkeypatch.setitem(runs.HANDLERS, "generate", lambda run, ctx: called.append(run.pk))
    with pytest.raises(runs.RunBusy):
        runs.execute_run(run.pk, worker="w2")
    assert called == [] and Run.objects.get(pk=run.pk).worker == "w1"


def test_the_log_keeps_the_last_lines(admin_user, monkeypatch):
    def handler(run, ctx):
        for i in range(250):
            ctx.log(f"line {i}")

    monkeypatch.setitem(runs.HANDLERS, "generate", handler)
    run = runs.execute_run(queued_run(admin_user).pk)
    lines = run.log_tail.splitlines()
    assert len(lines) == Run.LOG_LINES
    assert lines[-2].endswith("line 249") and lines[-1].endswith("succeeded")


def test_cancelling(admin_user, monkeypatch):
    calls = []
    monkeypatch.setitem(runs.HANDLERS, "generate", lambda run, ctx: calls.append(1))
    queued = runs.cancel_run(admin_user, queued_run(admin_user))
    assert queued.status == Run.Status.CANCELLED
    assert runs.execute_run(queued.pk).status == Run.Status.CANCELLED and calls == []
    with pytest.raises(ValueError, match="already cancelled"):
        runs.cancel_run(admin_user, queued)

    def handler(run, ctx):  # cancelled from the UI while running: the handler stops at its next check
        Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED)
        ctx.check_cancelled()
        calls.append("not reached")

    monkeypatch.setitem(runs.HANDLERS, "generate", handler)
    run = runs.execute_run(queued_run(admin_user).pk)
    assert run.status == Run.Status.CANCELLED and calls == [] and run.log_tail.endswith("cancelled")


# --- registry -------------------------------------------------------------------------------


def test_one_active_scorer(admin_user, base_model):
    a = registry.register_model(admin_user, "scorer", "sciscore-a", "/m/a")
    b = registry.register_model(admin_user, "scorer", "sciscore-b", "/m/b")
    assert registry.active_scorer() is None
    registry.activate_scorer(admin_user, a)
    assert registry.active_scorer() == a
    registry.activate_scorer(admin_user, b)
    assert registry.active_scorer() == b
    assert list(ModelVersion.objects.filter(is_active=True)) == [b]
    assert AuditEvent.objects.filter(action="model.scorer_activated").count() == 2
    with pytest.raises(ValueError, match="Only a scorer"):
        registry.activate_scorer(admin_user, base_model)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database enforces it too
        ModelVersion.objects.filter(pk=a.pk).update(is_active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=base_model.pk).update(is_active=True)


def test_register_validation(admin_user, base_model):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(admin_user, "generator_base", "tiny-flux", "/elsewhere")
    with pytest.raises(ValueError, match="kind must be one of"):
        registry.register_model(admin_user, "vae", "v", "/v")
    with pytest.raises(ValueError, match="needs a generator model as its parent"):
        registry.register_model(admin_user, "generator_lora", "l", "/l")
    with pytest.raises(ValueError, match="location is empty"):
        registry.register_model(admin_user, "scorer", "s", " ")


def test_lineage_and_image_origin(admin_user, base_model):
    version = DatasetVersion.objects.create(name="v1", content_hash="0" * 64, created_by=admin_user)
    sft = registry.register_model(
        admin_user, "generator_lora", "sft-1", "/m/sft-1", parent=base_model, dataset_version=version
    )
    oft = registry.register_model(admin_user, "generator_lora", "oft-1", "/m/oft-1", parent=sft)
    run = Run.objects.create(kind="oft", params={}, created_by=admin_user, input_model=sft, output_model=oft)
    line = registry.lineage(oft)
    assert line.ancestors == [sft, base_model]
    assert line.dataset_version == version  # inherited from the nearest ancestor trained on one
    assert line.produced_by == [run] and line.children == []
    assert registry.lineage(base_model).children == [sft]
    assert list(version.model_versions.all()) == [sft]

    gen_run = Run.objects.create(kind="generate", params={}, created_by=admin_user, input_model=oft)
    image = make_image(tuple=TupleFactory(task=Task.objects.get(code="RU")))
    image.generator = registry.generator_label(gen_run, oft.name)
    image.save()
    assert registry.image_origin(image) == (gen_run, oft)
    assert registry.image_origin(make_image()) == (None, None)
    assert PromptTuple.objects.count() == 1


def test_admin_pages_are_read_only(client, django_user_model, admin_user, base_model, monkeypatch):
    monkeypatch.setitem(runs.HANDLERS, "generate", lambda run, ctx: ctx.log("hello <b>"))
    run = runs.execute_run(queued_run(admin_user).pk)
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.org", "pw"))
    for url in [
        "/admin/ml/run/",
        f"/admin/ml/run/{run.pk}/change/",
        "/admin/ml/modelversion/",
        f"/admin/ml/modelversion/{base_model.pk}/change/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
    page = client.get(f"/admin/ml/run/{run.pk}/change/").content.decode()
    assert "hello &lt;b&gt;" in page and "succeeded" in page
    assert client.get("/admin/ml/run/add/").status_code == 403

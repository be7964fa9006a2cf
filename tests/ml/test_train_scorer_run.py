"""``train_scorer`` runs: a tiny scorer trained on a synthetic dataset version through ``python -m ml``,
evaluated on validation, test_S and test_C against the active scorer, registered exactly once, and
resumed from its checkpoint when its worker dies."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import torch
from django.utils import timezone

from ml.models import ModelVersion, Run
from ml.services import registry, runs
from ml.services.runs import train_scorer
from ml.tasks import execute_run
from tests.support.scoring_data import synthetic_version, tiny_scorer

pytestmark = pytest.mark.django_db

TINY = {
    "total_steps": 4,
    "warmup_steps": 0,
    "lr": 1e-3,
    "batch_size": 2,
    "eval_every": 2,
    "checkpoint_every": 2,
    "save_format": "open_clip",
}


@pytest.fixture(autouse=True)
def _small(settings, tmp_path, monkeypatch):
    settings.ML_WORK_ROOT = tmp_path / "work"
    settings.ML_MODEL_ROOT = tmp_path / "models"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the trainer subprocess
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def active(admin_user, tmp_path):
    return tiny_scorer(admin_user, tmp_path / "active", name="active", seed=1, active=True)


@pytest.fixture
def version(admin_user):
    return synthetic_version(admin_user, {"train": 8, "validation": 4, "test_S": 4, "test_C": 4})


def _start(admin_user, params) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        return runs.start_run(admin_user, "train_scorer", params, celery_task=execute_run)


def _redeliver(run: Run) -> Run:
    """What the broker does when the worker running ``run`` died: the row is still running, its heartbeat old."""
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING, finished_at=None, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    return runs.execute_run(run.pk, worker="second-worker")


# --- parameters ---------------------------------------------------------------------------


def test_it_fills_in_the_paper_defaults_and_the_active_scorer(admin_user, active, version):
    run = _start(admin_user, {"dataset_version": version.pk})
    assert run.input_model == active
    assert run.params == {
        "dataset_version": version.pk,
        "base_model": active.pk,
        "processes": 1,
        "lr": 2e-6,
        "weight_decay": 0.3,
        "warmup_steps": 150,
        "total_steps": 600,
        "batch_size": 8,
        "grad_accum": 1,
        "grad_clip": 1.0,
        "seed": 0,
        "eval_every": 50,
        "eval_batch_size": 64,
        "checkpoint_every": 50,
        "mixed_precision": "auto",
        "gradient_checkpointing": False,
        "augment": False,
        "save_format": "both",
        # the platform recipe: today's behaviour
        "recipe": "platform",
        "lr_schedule": "linear",
        "lr_decay_steps": 0,
        "effective_batch": 0,
        "loss_reduction": "mean",
        "variants": "first",
        "weight_decay_scope": "matrices",
        "clamp_logit_scale": True,
    }


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"lr": "fast"}, "lr", "number"),
        ({"processes": 0}, "processes", "between 1 and 64"),
        ({"mixed_precision": "fp16"}, "mixed_precision", "one of auto, no, bf16"),
        ({"warmup_steps": 700}, "warmup_steps", "must not exceed total_steps"),
        ({"augment": "yes"}, "augment", "true or false"),
        ({"dataset_version": None}, "dataset_version", "required"),
        ({"dataset_version": 999999}, "dataset_version", "no dataset version"),
        ({"base_model": 999999}, "base_model", "no registered model"),
        ({"colour": "red"}, "params", "unknown parameters: colour"),
    ],
)
def test_bad_params_are_refused_per_field(admin_user, active, version, change, field, message):
    with pytest.raises(runs.RunParamsError) as caught:
        _start(admin_user, {"dataset_version": version.pk, **change})
    assert message in caught.value.errors[field]


def test_it_needs_a_scorer_and_train_and_validation_pairs(admin_user, tmp_path):
    no_validation = synthetic_version(admin_user, {"train": 2, "test_S": 1})
    generator = registry.register_model(admin_user, "generator_base", "flux", "/models/flux")
    with pytest.raises(runs.RunParamsError) as caught:
        _start(admin_user, {"dataset_version": no_validation.pk})
    assert "no validation pairs" in caught.value.errors["dataset_version"]
    assert "no scorer is active" in caught.value.errors["base_model"]
    with pytest.raises(runs.RunParamsError) as caught:
        _start(admin_user, {"dataset_version": no_validation.pk, "base_model": generator.pk})
    assert "not a scorer" in caught.value.errors["base_model"]


def test_several_processes_train_under_accelerate_launch(admin_user, active, version, tmp_path):
    run = _start(admin_user, {"dataset_version": version.pk, "processes": 4, "augment": True, **TINY})
    command = train_scorer.trainer_command(run, tmp_path / "data", tmp_path / "out")
    argv = command.argv
    assert "accelerate.commands.launch" in argv and argv[argv.index("--num_processes") + 1] == "4"
    assert argv[argv.index("--model") + 1] == active.location and argv[argv.index("--total-steps") + 1] == "4"
    assert "--augment" in argv and "--no-gradient-checkpointing" in argv


# --- training, evaluation, registration ----------------------------------------------------


def test_it_trains_evaluates_against_the_active_scorer_and_registers_once(admin_user, active, version):
    run = runs.execute_run(_start(admin_user, {"dataset_version": version.pk, **TINY}).pk)

    assert run.status == Run.Status.SUCCEEDED, run.error
    model = run.output_model
    assert model.kind == "scorer" and model.name == f"run-{run.pk}" and not model.is_active
    assert model.parent == active and model.dataset_version == version and model.config == run.params
    assert Path(model.location).is_dir() and registry.active_scorer() == active
    assert [m["step"] for m in run.metrics] == [1, 2, 3, 4]  # the trainer's series
    assert {"validation", "test_S", "test_C"} <= set(model.metrics)
    for split in ("validation", "test_S", "test_C"):
        result = model.metrics[split]
        assert result["n"] == 4 and set(result["by_task"]) == {"ME", "RU", "RI", "EL"}
        compared = model.metrics["comparison"]["splits"][split]
        assert compared["delta"] == pytest.approx(compared["accuracy"] - compared["active_accuracy"])
        assert set(compared["by_task"]) == set(result["by_task"])
    assert model.metrics["comparison"]["model"] == active.pk
    assert run.artifacts["comparison"] == model.metrics["comparison"]
    assert run.artifacts["evaluation"]["test_C"] == model.metrics["test_C"]
    assert model.metrics["training"]["optimizer_steps"] == 4
    assert "validation accuracy" in run.log_tail and "(active scorer active:" in run.log_tail

    again = _redeliver(run)
    assert again.status == Run.Status.SUCCEEDED and again.output_model == model
    assert ModelVersion.objects.filter(kind="scorer").count() == 2
    assert "registered by an earlier delivery; nothing left to do" in again.log_tail


def test_a_run_whose_worker_died_resumes_from_its_checkpoint_and_registers_once(admin_user, active, version, settings):
    """Delivery 1 dies after training; its disk is rolled back to a kill during step 3 (checkpoint at
    step 2). Delivery 2 resumes at step 3 and dies between copying the model and registering it.
    Delivery 3 registers it; delivery 4 finds it registered."""
    run = _start(admin_user, {"dataset_version": version.pk, **TINY})
    with mock.patch.object(train_scorer, "evaluate_model", side_effect=RuntimeError("worker killed")):
        runs.execute_run(run.pk)
    out = Path(settings.ML_WORK_ROOT) / f"run-{run.pk}" / "train"
    shutil.rmtree(out / "checkpoints" / "step-000004")
    shutil.rmtree(out / "final")
    (out / "summary.json").unlink()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (out / "metrics.jsonl").write_text("".join(json.dumps({**line, "delivery": 1}) + "\n" for line in lines[:3]))

    with mock.patch.object(registry, "register_model", side_effect=RuntimeError("worker killed")):
        _redeliver(run)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m.get("delivery")) for m in metrics] == [(1, 1), (2, 1), (3, None), (4, None)]
    assert (Path(settings.ML_MODEL_ROOT) / "scorer" / f"run-{run.pk}").is_dir()  # copied, not registered
    assert not ModelVersion.objects.filter(name=f"run-{run.pk}").exists()

    run = _redeliver(run)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert "training finished in an earlier delivery" in run.log_tail
    assert run.output_model.name == f"run-{run.pk}" and run.artifacts["training"]["optimizer_steps"] == 4

    _redeliver(run)
    assert ModelVersion.objects.filter(name=f"run-{run.pk}").count() == 1
    assert Run.objects.get(pk=run.pk).output_model == run.output_model


# --- recipes ------------------------------------------------------------------------------


PAPER = {
    "recipe": "paper",
    "lr_schedule": "deepspeed_log",
    "batch_size": 16,
    "grad_accum": 0,
    "effective_batch": 1024,
    "loss_reduction": "sum",
    "variants": "random",
    "weight_decay_scope": "all",
    "clamp_logit_scale": False,
    "eval_every": 10,
}


def test_the_paper_recipe_fills_in_the_research_codes_values_and_explicit_ones_win(admin_user, active, version):
    run = _start(admin_user, {"dataset_version": version.pk, "recipe": "paper"})
    assert {name: run.params[name] for name in PAPER} == PAPER
    assert run.params["lr"] == 2e-6 and run.params["total_steps"] == 600  # the same in both recipes
    changed = _start(
        admin_user,
        {"dataset_version": version.pk, "recipe": "paper", "loss_reduction": "mean", "grad_accum": 1, "batch_size": 2},
    )
    assert changed.params["loss_reduction"] == "mean" and changed.params["variants"] == "random"
    assert (changed.params["grad_accum"], changed.params["effective_batch"]) == (1, 0)  # explicit grad_accum wins
    assert runs.kinds.describe("train_scorer")[2:4] == [  # after the two references
        {"name": "recipe", "type": "choice", "default": "platform", "choices": ["platform", "paper"]},
        {"name": "processes", "type": "int", "default": 1, "minimum": 1, "maximum": 64},
    ]
    described = {f["name"]: f.get("default", "ref") for f in runs.kinds.describe("train_scorer")}
    assert all(described[name] is None for name in PAPER if name != "recipe")  # the recipe decides


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recipe": "paper", "processes": 3}, "positive multiple of batch_size x processes (48)"),
        ({"grad_accum": 2, "effective_batch": 20}, "is not grad_accum x batch_size x processes (16)"),
        ({"recipe": "research"}, "one of platform, paper"),
    ],
)
def test_a_step_size_that_cannot_be_met_is_refused(admin_user, active, version, change, message):
    with pytest.raises(runs.RunParamsError) as caught:
        _start(admin_user, {"dataset_version": version.pk, **change})
    assert message in next(iter(caught.value.errors.values()))


def test_a_paper_run_trains_with_the_research_codes_recipe(admin_user, active, version, settings):
    run = runs.execute_run(
        _start(admin_user, {"dataset_version": version.pk, "recipe": "paper", **TINY, "grad_accum": 1}).pk
    )
    assert run.status == Run.Status.SUCCEEDED, run.error
    command = next(line for line in run.log_tail.splitlines() if " $ " in line)
    assert "--recipe paper" in command and "--loss-reduction sum" in command and "--no-clamp-logit-scale" in command
    # The paper's per-example draws read the published layout's train set (a tuple per row, every image).
    assert f"--train {settings.MEDIA_ROOT}/exports/{version.pk}/published/Science-T2I-Trainset" in command
    trained = json.loads((Path(settings.ML_WORK_ROOT) / f"run-{run.pk}" / "train" / "config.json").read_text())
    assert {
        name: trained[name]
        for name in PAPER
        if name not in ("batch_size", "grad_accum", "eval_every", "effective_batch")
    } == {
        name: value
        for name, value in PAPER.items()
        if name not in ("batch_size", "grad_accum", "eval_every", "effective_batch")
    }
    assert (trained["batch_size"], trained["grad_accum"], trained["effective_batch"]) == (2, 1, 0)
    assert [m["lr"] for m in run.metrics][:2] == [0.0, 0.0]  # DeepSpeed's log warmup: two steps at lr 0
    assert run.output_model.config["recipe"] == "paper"


def test_the_run_form_leaves_the_recipes_points_to_the_recipe(admin_user, client, active, version):
    from django.urls import reverse

    client.force_login(admin_user)
    form = client.get(reverse("ml:run-new"), {"kind": "train_scorer"}).context["form"]
    assert form.fields["recipe"].initial == "platform"
    assert form.fields["loss_reduction"].choices[0] == ("", "— (the recipe's)")
    assert not form.fields["loss_reduction"].required
    assert form.fields["batch_size"].initial is None and form.fields["clamp_logit_scale"].initial is None
    data = {
        "dataset_version": version.pk,
        "recipe": "paper",
        "variants": "first",
        "clamp_logit_scale": "unknown",
        "mixed_precision": "auto",
        "save_format": "both",
    }  # as a browser sends the preselected choices
    with mock.patch("ml.tasks.execute_run.apply_async"):
        response = client.post(f"{reverse('ml:run-new')}?kind=train_scorer", data)
    assert response.status_code == 302, response.context["form"].errors
    run = Run.objects.latest("id")
    assert run.params["variants"] == "first" and run.params["loss_reduction"] == "sum"
    assert run.params["clamp_logit_scale"] is False and run.params["batch_size"] == 16


def test_the_api_starts_a_paper_run_and_refuses_an_unknown_recipe(
    admin_user, api, active, version, django_capture_on_commit_callbacks
):
    from unittest import mock

    api.force_authenticate(admin_user)
    with mock.patch("ml.tasks.execute_run.apply_async"), django_capture_on_commit_callbacks(execute=True):
        started = api.post(
            "/api/ml/runs/",
            {
                "kind": "train_scorer",
                "params": {"dataset_version": version.pk, "recipe": "paper", "loss_reduction": "mean"},
            },
            format="json",
        )
    assert started.status_code == 201, started.json()
    params = started.json()["params"]
    assert (params["recipe"], params["lr_schedule"], params["variants"], params["loss_reduction"]) == (
        "paper",
        "deepspeed_log",
        "random",
        "mean",
    ), "the recipe's values, the explicit one wins"
    refused = api.post(
        "/api/ml/runs/",
        {"kind": "train_scorer", "params": {"dataset_version": version.pk, "recipe": "research"}},
        format="json",
    )
    assert refused.status_code == 400 and "recipe" in refused.json()["params"]
    kinds = {k["kind"]: k for k in api.get("/api/ml/run-kinds/").json()}
    for kind in ("train_scorer", "sft", "oft"):
        (recipe,) = [f for f in kinds[kind]["fields"] if f["name"] == "recipe"]
        assert recipe["choices"] == ["platform", "paper"] and recipe["default"] == "platform"

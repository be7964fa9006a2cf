"""The runs and registry pages under /ml/: admins only, the run form, run detail, lineage, activate, compare."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.urls import reverse

from ml.forms import RunForm
from ml.models import ModelVersion, Run
from ml.services.runs import kinds
from tests.support.factories import TupleFactory
from tests.support.ml_registry_data import registry_world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("ml.tasks.execute_run.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def world(admin_user):
    return registry_world(admin_user)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def pages(world) -> list[tuple[str, str]]:
    run, model = world.failed.pk, world.tuned.pk
    gets = [
        reverse("ml:run-list"),
        reverse("ml:run-new"),
        f"{reverse('ml:run-new')}?kind=generate",
        reverse("ml:run-detail", args=[run]),
        reverse("ml:model-list"),
        reverse("ml:model-detail", args=[model]),
        f"{reverse('ml:model-compare')}?a={world.base.pk}&b={model}",
        reverse("ml:image-origin", args=[world.image.pk]),
    ]
    posts = [
        f"{reverse('ml:run-new')}?kind=generate",
        reverse("ml:run-cancel", args=[run]),
        reverse("ml:model-activate", args=[model]),
    ]
    return [("get", url) for url in gets] + [("post", url) for url in posts]


def test_anonymous_users_are_sent_to_login(client, world):
    for method, url in pages(world):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_everyone_but_admins_gets_403(client, annotator, reviewer, world, role):
    client.force_login(annotator if role == "annotator" else reviewer)
    for method, url in pages(world):
        assert getattr(client, method)(url).status_code == 403, (method, url)
    assert not ModelVersion.objects.filter(is_active=True).exists() and not Run.objects.filter(status="queued")
    assert 'href="/ml/runs/"' not in client.get(reverse("home")).content.decode()


def test_admins_get_nav_links(admin_client):
    html = admin_client.get(reverse("home")).content.decode()
    assert 'href="/ml/runs/">Runs</a>' in html and 'href="/ml/models/">Models</a>' in html


def test_the_runs_list(admin_client, world):
    Run.objects.filter(pk=world.trained.pk).update(status="running", progress=0.42)
    loading = Run.objects.create(
        kind="sft", created_by=world.trained.created_by, status="running", phase="loading the model"
    )
    response = admin_client.get(reverse("ml:run-list"))
    html = response.content.decode()
    assert f'<tr data-run="{world.trained.pk}" data-status="running" data-phase="">' in html
    row = html.split(f'<tr data-run="{loading.pk}"')[1].split("</tr>")[0]
    assert '<span class="run-phase">loading the model…</span>' in row and 'percent" hidden>0%' in row
    assert 'value="42"' in html and "42%" in html and "gpu-1" in html and "boss" in html
    assert 'data-api="/api/ml/runs/"' in html and "ml/runs.js" in html
    assert f'href="{reverse("ml:run-new")}?kind=generate"' in html
    filtered = admin_client.get(reverse("ml:run-list"), {"status": "failed"}).context["page"].object_list
    assert list(filtered) == [world.failed]


def test_the_new_run_page_lists_kinds_then_prefills_the_form(admin_client, world):
    chooser = admin_client.get(reverse("ml:run-new")).content.decode()
    assert f'href="{reverse("ml:run-new")}?kind=generate"' in chooser
    response = admin_client.get(reverse("ml:run-new"), {"kind": "generate"})
    form = response.context["form"]
    assert [value for value, _ in form.fields["model"].choices] == ["", str(world.generator.pk)]  # generators only
    html = response.content.decode()
    assert 'name="steps" value="28"' in html and 'name="guidance" value="3.5"' in html
    assert 'name="tuples_task"' in html and 'name="tuples_limit" value="100"' in html and 'name="tuples_ids"' in html


def test_every_available_kind_has_a_form(admin_client, world):
    for kind in kinds.available():
        response = admin_client.get(reverse("ml:run-new"), {"kind": kind})
        assert response.status_code == 200, kind
        described = {field["name"] for field in kinds.describe(kind)}
        assert set(response.context["form"].refs) | set(response.context["form"].typed) == described
        assert admin_client.post(f"{reverse('ml:run-new')}?kind={kind}", {}).status_code in (302, 400), kind


def test_the_form_starts_a_run_and_redirects_to_it(admin_client, world, no_broker, django_capture_on_commit_callbacks):
    tuples = [TupleFactory(), TupleFactory()]
    data = {
        "model": world.generator.pk,
        "tuples_task": "",
        "tuples_limit": "100",
        "tuples_ids": f"{tuples[0].pk}, {tuples[1].pk}",
        "steps": "4",
        "guidance": "",
        "include_implicit": "on",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{reverse('ml:run-new')}?kind=generate", data)
    run = Run.objects.get(status="queued")
    assert response.status_code == 302 and response["Location"] == reverse("ml:run-detail", args=[run.pk])
    assert run.params["tuples"] == [t.pk for t in tuples] and run.params["steps"] == 4
    assert run.params["guidance"] == 3.5 and run.params["include_implicit"] is True  # empty: the default
    assert run.created_by.username == "boss" and run.input_model == world.generator
    no_broker.assert_called_once()
    by_task = admin_client.post(
        f"{reverse('ml:run-new')}?kind=generate",
        {"model": world.generator.pk, "tuples_task": "RU", "tuples_limit": "5"},
    )
    assert by_task.status_code == 302
    assert Run.objects.filter(status="queued").latest("id").params["tuples"] == {"task": "RU", "limit": 5}


def test_the_form_shows_errors_per_field(admin_client, world):
    response = admin_client.post(f"{reverse('ml:run-new')}?kind=generate", {"steps": "0", "tuples_ids": "1, x"})
    assert response.status_code == 400
    assert response.context["form"].errors["tuples_ids"] == ["tuple ids, separated by commas or spaces"]
    response = admin_client.post(f"{reverse('ml:run-new')}?kind=generate", {"steps": "0", "guidance": "99"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["steps"] == ["must be between 1 and 200"] and errors["guidance"] == ["must be between 0.0 and 30.0"]
    assert "required" in errors["model"][0] and "required" in errors["tuples_task"][0]
    html = response.content.decode()
    assert 'id="steps-error"' in html and "must be between 1 and 200" in html
    assert not Run.objects.filter(status="queued").exists()


def test_the_form_follows_any_kind_description(admin_user, world):
    described = [
        {"name": "scorer", "ref": "model", "required": True, "model_kinds": ["scorer"], "help": "the scorer"},
        {"name": "dataset_version", "ref": "dataset_version", "required": True, "model_kinds": [], "help": ""},
        {"name": "tasks", "ref": "tasks", "required": False, "model_kinds": [], "help": "default: all"},
        {"name": "detector", "ref": "path", "required": False, "model_kinds": [], "help": "on the workers"},
        {"name": "loss", "type": "choice", "default": "sciscore", "choices": ["sciscore", "bt"]},
        {
            "name": "splits",
            "type": "splits",
            "default": ["validation", "test_S"],
            "choices": ["train", "validation", "test_S"],
        },
        {"name": "lr", "type": "float", "default": 1e-5, "minimum": 0.0, "maximum": 1.0},
        {"name": "lora", "type": "bool", "default": True},
        {"name": "schedule", "type": "cosine-table", "default": [1, 2]},
    ]
    with mock.patch("ml.services.runs.kinds.describe", return_value=described):
        form = RunForm(
            "train_scorer",
            {
                "scorer": str(world.tuned.pk),
                "dataset_version": str(world.version.pk),
                "tasks": ["RU", "BU"],
                "detector": " /models/dino ",
                "loss": "bt",
                "splits": ["test_S"],
                "lr": "0.001",
                "schedule": "[3, 4]",
            },
        )
        assert [v for v, _ in form.fields["scorer"].choices][1:] == [
            str(m.pk) for m in (world.child, world.tuned, world.base)
        ]
        assert form.fields["dataset_version"].choices == [("", "—"), (str(world.version.pk), "v1")]
        assert form.is_valid(), form.errors
        assert form.params() == {
            "scorer": world.tuned.pk,
            "dataset_version": world.version.pk,
            "tasks": ["RU", "BU"],
            "detector": "/models/dino",
            "loss": "bt",
            "splits": ["test_S"],
            "lr": 0.001,
            "lora": False,
            "schedule": [3, 4],
        }
        blank = RunForm("train_scorer", {"loss": "sciscore"})
        assert blank.is_valid() and blank.params() == {"loss": "sciscore", "lora": False}  # the rest: defaults
        unbound = RunForm("train_scorer")
        assert unbound.fields["lora"].initial is True and unbound.fields["splits"].initial == ["validation", "test_S"]


def test_run_detail_of_a_failed_run_shows_the_traceback_and_no_cancel(admin_client, world):
    html = admin_client.get(reverse("ml:run-detail", args=[world.failed.pk])).content.decode()
    assert 'id="run-error"' in html and "Traceback (most recent call last)" in html
    assert '<p class="error">ValueError: no tuples were selected</p>' in html
    assert "failed: ValueError" in html and 'id="cancel-run"' not in html


TRAIN_REFS = [
    {"name": "model", "ref": "model", "required": True, "model_kinds": ["scorer"], "help": ""},
    {"name": "dataset_version", "ref": "dataset_version", "required": True, "model_kinds": [], "help": ""},
]


def test_run_detail_shows_params_plots_models_and_images(admin_client, world):
    with (
        mock.patch.dict("ml.services.runs.kinds.MODULES", {"train_scorer": None}),
        mock.patch("ml.services.runs.kinds.describe", return_value=TRAIN_REFS),
    ):
        response = admin_client.get(reverse("ml:run-detail", args=[world.trained.pk]))
    html = response.content.decode()
    assert f'<a href="/ml/models/{world.base.pk}/">sciscore-base</a> (scorer, id {world.base.pk})' in html
    assert f'id="output-model" href="/ml/models/{world.tuned.pk}/"' in html
    assert f'href="/curation/versions/{world.version.pk}/">v1</a>' in html
    plots = json.loads(html.split('id="run-plot-data" type="application/json">')[1].split("</script>")[0])
    assert [p["name"] for p in plots] == ["loss", "val_by_task"]
    assert 'id="run-plots"' in html and "ml/plot.js" in html and 'data-api="/api/ml/runs/' in html
    generated = admin_client.get(reverse("ml:run-detail", args=[world.generated.pk])).content.decode()
    assert (
        f'href="/ml/images/{world.image.pk}/origin/"><img class="thumb" src="/api/images/{world.image.pk}/file/"'
        in (generated)
    )  # run → image, its thumbnail
    assert f'<a href="/ml/models/{world.generator.pk}/">tiny-flux</a> (generator_base, id' in generated


def test_cancel_button_cancels_a_queued_run(admin_client, admin_user):
    run = Run.objects.create(kind="generate", created_by=admin_user)
    html = admin_client.get(reverse("ml:run-detail", args=[run.pk])).content.decode()
    assert f'action="/ml/runs/{run.pk}/cancel/"' in html and "csrfmiddlewaretoken" in html
    response = admin_client.post(reverse("ml:run-cancel", args=[run.pk]), follow=True)
    assert Run.objects.get(pk=run.pk).status == "cancelled"
    assert f"Run {run.pk} cancelled." in response.content.decode()
    again = admin_client.post(reverse("ml:run-cancel", args=[run.pk]), follow=True)
    assert "This run already cancelled." in again.content.decode()


def test_the_registry_list(admin_client, world):
    world.tuned.is_active = True
    world.tuned.save(update_fields=["is_active"])
    html = admin_client.get(reverse("ml:model-list")).content.decode()
    assert f'<a href="/ml/models/{world.tuned.pk}/">sciscore-v1</a> <span class="badge active">active</span>' in html
    assert f'href="/curation/versions/{world.version.pk}/">v1</a>' in html
    assert f'<a href="/ml/models/{world.base.pk}/">sciscore-base</a>' in html  # the parent column
    assert 'id="compare-form"' in html
    only = admin_client.get(reverse("ml:model-list"), {"kind": "generator_base"}).context["page"].object_list
    assert list(only) == [world.generator]


def test_model_detail_shows_lineage_both_ways(admin_client, world):
    html = admin_client.get(reverse("ml:model-detail", args=[world.tuned.pk])).content.decode()
    ancestors = html.split('id="ancestors"')[1].split("</ul>")[0]
    assert f'href="/ml/models/{world.base.pk}/"' in ancestors
    assert f'href="/curation/versions/{world.version.pk}/">v1</a>' in html
    assert f'href="/api/curation/versions/{world.version.pk}/members/"' in html  # → its pairs and labels
    assert f'href="/ml/runs/{world.trained.pk}/">run {world.trained.pk}</a>' in html.split('id="produced-by"')[1]
    assert f'href="/ml/runs/{world.evaluated.pk}/">run {world.evaluated.pk}</a>' in html.split('id="used-by"')[1]
    assert f'href="/ml/models/{world.child.pk}/"' in html.split('id="children"')[1]
    assert 'id="activate"' in html and "&quot;validation&quot;" not in html  # a table, not a JSON dump
    accuracy = html.split('id="model-accuracy"')[1].split("</table>")[0]
    assert '<th scope="col" class="num">validation</th><th scope="col" class="num">test_C</th>' in accuracy
    assert '<tr data-task="RU"><th scope="row">RU</th><td class="num">0.900</td><td class="num">–</td>' in accuracy
    assert '<tr data-task="FR"><th scope="row">FR</th><td class="num">–</td><td class="num">0.600</td>' in accuracy
    child = admin_client.get(reverse("ml:model-detail", args=[world.child.pk])).content.decode()
    assert "(an ancestor's)" in child
    generator = admin_client.get(reverse("ml:model-detail", args=[world.generator.pk])).content.decode()
    assert 'id="activate"' not in generator


def test_make_active_scorer(admin_client, world):
    response = admin_client.post(reverse("ml:model-activate", args=[world.tuned.pk]), follow=True)
    assert ModelVersion.objects.get(is_active=True) == world.tuned
    html = response.content.decode()
    assert "sciscore-v1 is now the active scorer." in html
    assert 'id="active-badge"' in html and 'id="activate"' not in html
    refused = admin_client.post(reverse("ml:model-activate", args=[world.generator.pk]), follow=True)
    assert "Only a scorer can be the active scorer." in refused.content.decode()


def test_compare_two_scorers(admin_client, world):
    response = admin_client.get(reverse("ml:model-compare"), {"a": world.base.pk, "b": world.tuned.pk})
    html = response.content.decode()
    validation = html.split('data-split="validation"')[1].split("</table>")[0]
    assert '<td class="num">0.600</td><td class="num">0.800</td>' in validation
    assert '<td class="num diff up">+0.200</td>' in validation
    assert '<tr data-task="BU"><td>BU</td><td class="num">0.700</td><td class="num">–</td>' in validation
    assert 'data-split="test_S"' in html and 'data-split="test_C"' in html
    refused = admin_client.get(reverse("ml:model-compare"), {"a": world.base.pk, "b": world.generator.pk})
    assert "Choose two registered scorers." in refused.content.decode()


def test_compare_defaults_to_the_active_scorer_against_the_latest_other_one(admin_client, world):
    world.tuned.is_active = True
    world.tuned.save(update_fields=["is_active"])
    response = admin_client.get(reverse("ml:model-compare"))
    assert (response.context["a"], response.context["b"]) == (world.tuned, world.child)
    html = response.content.decode()
    assert 'id="compare-default"' in html and "the active scorer" in html
    assert "a: sciscore-v1 (active)" in html and "b: sciscore-v2</th>" in html
    listed = admin_client.get(reverse("ml:model-list")).content.decode().split('id="compare-form"')[1]
    assert f'<option value="{world.tuned.pk}" selected>' in listed.split('name="b"')[0]
    assert f'<option value="{world.child.pk}" selected>' in listed.split('name="b"')[1]


def test_compare_shows_the_active_scorers_figures_its_successor_measured(admin_client, world):
    """A scorer registered by hand has no metrics; the run that trained its successor measured it, as the
    active scorer, on the same data: the comparison shows those figures rather than dashes."""
    world.child.metrics = {
        "validation": {"accuracy": 0.85, "by_task": {"RU": {"accuracy": 0.95}}},
        "comparison": {
            "model": world.tuned.pk,
            "name": "sciscore-v1",
            "splits": {
                "validation": {
                    "accuracy": 0.85,
                    "active_accuracy": 0.75,
                    "by_task": {"RU": {"accuracy": 0.95, "active_accuracy": 0.65}, "BU": {"active_accuracy": 0.5}},
                }
            },
        },
    }
    world.child.save(update_fields=["metrics"])
    html = admin_client.get(reverse("ml:model-compare"), {"a": world.tuned.pk, "b": world.child.pk}).content.decode()
    validation = html.split('data-split="validation"')[1].split("</table>")[0]
    # its own figures win (0.8 overall, RU 0.9); what it lacks (BU) comes from the successor's measurement
    assert '<th>overall</th><td class="num">0.800</td><td class="num">0.850</td>' in validation
    assert '<tr data-task="RU"><td>RU</td><td class="num">0.900</td><td class="num">0.950</td>' in validation
    assert '<tr data-task="BU"><td>BU</td><td class="num">0.500</td><td class="num">–</td>' in validation
    assert 'id="borrowed-a"' in html and 'id="borrowed-b"' not in html


def test_image_origin_page(admin_client, world):
    html = admin_client.get(reverse("ml:image-origin", args=[world.image.pk])).content.decode()
    assert f'id="origin-run" href="/ml/runs/{world.generated.pk}/"' in html
    assert f'<a href="/ml/models/{world.generator.pk}/">tiny-flux</a>' in html
    assert f'src="/api/images/{world.image.pk}/file/"' in html and "run:" in html


# --- what the run page says while a run is in flight, and its log ---------------------------------


def test_a_run_page_says_what_the_worker_is_doing_instead_of_a_bare_zero(admin_client, admin_user):
    run = Run.objects.create(kind="generate", created_by=admin_user, status="running", phase="loading the model")
    html = admin_client.get(reverse("ml:run-detail", args=[run.pk])).content.decode()
    assert '<span class="run-phase" aria-live="polite">loading the model…</span>' in html
    assert '<span class="run-percent percent" hidden>0%</span>' in html  # the silent 0 % is not shown
    assert 'data-phase="loading the model"' in html
    Run.objects.filter(pk=run.pk).update(progress=0.4, phase="generating images")
    html = admin_client.get(reverse("ml:run-detail", args=[run.pk])).content.decode()
    assert '<span class="run-percent percent">40%</span>' in html and "generating images…" in html
    queued = Run.objects.create(kind="generate", created_by=admin_user)
    assert "waiting for a GPU worker…" in admin_client.get(reverse("ml:run-detail", args=[queued.pk])).content.decode()


def test_the_worker_reports_loading_the_model_through_its_progress(admin_user):
    """generate's handler says "loading the model" (RunContext.progress's phase) before it loads the pipeline,
    and what it does next once loaded; the lifecycle clears the phase when the run ends."""
    from ml.services.runs import generate
    from ml.services.runs.context import RunContext

    run = Run.objects.create(
        kind="generate",
        created_by=admin_user,
        status="running",
        progress=0.25,
        params={
            "model": "/pipelines/x",
            "seed": 1,
            "images_per_prompt": 1,
            "steps": 1,
            "guidance": 1.0,
            "width": 16,
            "height": 16,
        },
        artifacts={
            "tuples": [1],
            "done_tuples": [],
            "images": [],
            "pairs": [],
            "images_created": 0,
            "pairs_created": 0,
        },
    )
    with pytest.raises(Exception):  # noqa: B017 - whatever loading a pipeline from a missing folder raises
        generate.handle(run, RunContext(run))  # /pipelines/x does not exist: the load fails
    # the phase said what failed: loading; the progress stayed
    assert Run.objects.values_list("phase", "progress").get(pk=run.pk) == ("loading the model", 0.25)

    ctx = RunContext(run)
    ctx.progress(0.5, phase="x" * 200)
    assert Run.objects.values_list("phase", "progress").get(pk=run.pk) == ("x" * Run.PHASE_LENGTH, 0.5)
    ctx.progress(0.6)
    assert Run.objects.values_list("phase", "progress").get(pk=run.pk) == ("x" * Run.PHASE_LENGTH, 0.6)


def test_the_log_shows_the_last_state_of_each_progress_bar_without_glyphs():
    from ml.queries import readable_log

    bar = "\r".join(
        f"Loading pipeline components:  {p}%|{'█' * (p // 10)}{' ' * (10 - p // 10)}| {p // 14}/7"
        for p in (0, 14, 28, 42, 100)
    )
    steps = "\n".join(f"12:00:0{i} {i * 25}%|{'▍' * i}    | {i}/4 [00:0{i}<00:01, 2.0it/s]" for i in range(5))
    restarted = "12:00:09 0%|          | 0/4 [00:00<?, ?it/s]"
    text = f"12:00:00 started generate run 7\n12:00:00 {bar}\n{steps}\n{restarted}\n12:00:10 succeeded"
    assert readable_log(text) == "\n".join(
        [
            "12:00:00 started generate run 7",
            "12:00:00 Loading pipeline components:  100% 7/7",
            "12:00:04 100% 4/4 [00:04<00:01, 2.0it/s]",  # five redraws on five lines: the last one
            "12:00:09 0% 0/4 [00:00<?, ?it/s]",  # a bar that starts again is a new bar
            "12:00:10 succeeded",
        ]
    )
    assert readable_log("") == "" and "█" not in readable_log("a █▌ b")


def test_a_models_other_figures_are_listed_by_name_beside_the_accuracy_table():
    from ml.queries import metric_table

    table = metric_table(
        {
            "dataset_version": 3,
            "validation": {"accuracy": 0.75, "n": 1200, "by_task": {"RU": {"accuracy": 0.5, "n": 4}}},
            "training": {"best_step": 40, "best_val_accuracy": 0.7512345, "tuples_seen": 12800},
            "notes": ["a", "b"],
        }
    )
    assert table["splits"] == ["validation"]
    assert table["rows"] == [{"task": "overall", "cells": [0.75]}, {"task": "RU", "cells": [0.5]}]
    assert table["other"] == [
        {"name": "dataset_version", "text": "3"},
        {"name": "validation.n", "text": "1,200"},
        {"name": "training.best_step", "text": "40"},
        {"name": "training.best_val_accuracy", "text": "0.7512"},
        {"name": "training.tuples_seen", "text": "12,800"},
        {"name": "notes", "text": "a, b"},
    ]
    assert metric_table(None) == {"splits": [], "rows": [], "other": []}

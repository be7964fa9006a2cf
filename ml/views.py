"""Pages for runs and the model registry under /ml/ (schedules have their own, ml/views_schedules.py).

* ``runs/``: the runs, latest first (``?kind=&status=``); rows of queued and running runs follow the
  API every 2 s (static/ml/runs.js);
* ``runs/new/?kind=``: the form of a kind (ml/forms.py); without a kind, the kinds to choose from;
* ``runs/<id>/``: status, progress, parameters (references linked), log tail, metrics plots, artifacts,
  the models it took and produced, error with traceback; followed every 2 s while in flight; cancel;
* ``models/``: the registry (``?kind=``); ``models/new/``: register a checkpoint or an LMM judge;
  ``models/<id>/``: a model with its lineage both ways and "Make active scorer"; ``models/compare/?a=&b=``:
  two scorers per split and task;
* ``images/<id>/origin/``: the run that generated an image and the model it used.

Admins only (403 for everyone else, login required); changes are CSRF-protected POSTs through
:mod:`ml.services`.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from annotation import roles
from annotation.models import Image
from ml import queries
from ml.forms import RunForm
from ml.forms_models import ModelRegisterForm
from ml.models import ModelVersion, Run
from ml.services import judges, registry
from ml.services.runs import RunParamsError, cancel_run, kinds, start_run
from ml.tasks import execute_run

PAGE_SIZE = 50
POLL_MS = 2000
IMAGES_SHOWN = 24  # images of a generate run linked on its page


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins see runs and the model registry.")


def _choice(request, name: str, choices) -> str:
    value = request.GET.get(name, "")
    return value if value in choices else ""


def _scorers():
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.SCORER).order_by("-created_at", "-id")


@require_safe
@login_required
def run_list(request):
    _require_admin(request.user)
    kind, state = _choice(request, "kind", Run.Kind.values), _choice(request, "status", Run.Status.values)
    runs = Run.objects.select_related("created_by")
    if kind:
        runs = runs.filter(kind=kind)
    if state:
        runs = runs.filter(status=state)
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    for run in page.object_list:  # what an in-flight run does, where a bare 0 % would say nothing
        run.percent, run.phase_text = round(100 * run.progress), queries.phase_text(run)
    return render(
        request,
        "ml/runs/list.html",
        {
            "page": page,
            "kinds": Run.Kind.choices,
            "statuses": Run.Status.values,
            "kind": kind,
            "status": state,
            "available": kinds.available(),
            "poll_ms": POLL_MS,
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def run_new(request):
    """The form of ``?kind=``; without a (startable) kind, the list of kinds."""
    _require_admin(request.user)
    kind = _choice(request, "kind", kinds.available())
    labels = dict(Run.Kind.choices)
    if not kind:
        return render(
            request,
            "ml/runs/new.html",
            {"choices": [(k, labels[k]) for k in kinds.available()]},
            status=400 if request.method == "POST" else 200,
        )
    form = RunForm(kind, request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            run = start_run(request.user, kind, form.params(), celery_task=execute_run)
        except RunParamsError as exc:
            form.add_service_errors(exc.errors)
        else:
            messages.success(request, f"Run {run.pk} queued.")
            return redirect("ml:run-detail", run_id=run.pk)
    return render(
        request,
        "ml/runs/new.html",
        {"form": form, "kind": kind, "label": labels[kind]},
        status=400 if form.is_bound else 200,
    )


@require_safe
@login_required
def run_detail(request, run_id: int):
    _require_admin(request.user)
    run = get_object_or_404(
        Run.objects.select_related("created_by", "input_model", "output_model", "schedule"), pk=run_id
    )
    images = [
        {**entry, "url": reverse("image-file", args=[entry["image"]])}
        for entry in queries.run_images(run)[:IMAGES_SHOWN]
        if isinstance(entry["image"], int)
    ]
    return render(
        request,
        "ml/runs/detail.html",
        {
            "run": run,
            "percent": round(100 * run.progress),
            "phase": queries.phase_text(run),
            "log": queries.readable_log(run.log_tail),
            "params": queries.param_rows(run),
            "plots": queries.metric_plots(run.metrics),
            "artifacts_json": json.dumps(run.artifacts, indent=2, sort_keys=True) if run.artifacts else "",
            "error_first_line": run.error.split("\n", 1)[0] if run.error else "",
            "images": images,
            "image_count": len(queries.run_images(run)),
            "api_url": reverse("ml-run-detail", args=[run.pk]),
            "poll_ms": POLL_MS,
        },
    )


@require_POST
@login_required
def run_cancel(request, run_id: int):
    _require_admin(request.user)
    try:
        cancel_run(request.user, get_object_or_404(Run, pk=run_id))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run {run_id} cancelled.")
    return redirect("ml:run-detail", run_id=run_id)


@require_safe
@login_required
def model_list(request):
    _require_admin(request.user)
    kind = _choice(request, "kind", ModelVersion.Kind.values)
    models = ModelVersion.objects.select_related("parent", "dataset_version", "created_by")
    if kind:
        models = models.filter(kind=kind)
    return render(
        request,
        "ml/models/list.html",
        {
            "page": Paginator(models, PAGE_SIZE).get_page(request.GET.get("page")),
            "kinds": ModelVersion.Kind.choices,
            "kind": kind,
            "scorers": _scorers(),
            "pair": queries.default_pair(),
        },
    )


@require_safe
@login_required
def model_detail(request, model_id: int):
    _require_admin(request.user)
    model = get_object_or_404(
        ModelVersion.objects.select_related("parent", "dataset_version", "created_by"), pk=model_id
    )
    is_scorer = model.kind == ModelVersion.Kind.SCORER
    return render(
        request,
        "ml/models/detail.html",
        {
            "model": model,
            "lineage": registry.lineage(model),
            "used_by": queries.runs_using(model),
            "is_scorer": is_scorer,
            "other_scorers": _scorers().exclude(pk=model.pk) if is_scorer else [],
            "metrics": queries.metric_table(model.metrics),
            "config_json": json.dumps(model.config, indent=2, sort_keys=True) if model.config else "",
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def model_new(request):
    """Register a checkpoint or an LMM judge (``ml/forms_models.py``); audited by the registry."""
    _require_admin(request.user)
    form = ModelRegisterForm(request.POST or None, initial={"kind": request.GET.get("kind", "")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            model = registry.register_model(
                request.user,
                data["kind"],
                data["name"],
                data["location"],
                config=data["config"],
                parent=data["parent"],
                dataset_version=data["dataset_version"],
            )
        except judges.JudgeConfigError as exc:
            form.add_error(exc.field, str(exc))
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Registered {model.kind} {model.name}.")
            return redirect("ml:model-detail", model_id=model.pk)
    return render(request, "ml/models/new.html", {"form": form})


@require_POST
@login_required
def model_activate(request, model_id: int):
    _require_admin(request.user)
    try:
        model = registry.activate_scorer(request.user, get_object_or_404(ModelVersion, pk=model_id))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{model.name} is now the active scorer.")
    return redirect("ml:model-detail", model_id=model_id)


@require_safe
@login_required
def model_compare(request):
    _require_admin(request.user)
    a, b = queries.find_scorer(request.GET.get("a")), queries.find_scorer(request.GET.get("b"))
    chosen = "a" in request.GET or "b" in request.GET
    if not chosen:  # by default: the active scorer (else the latest) against the latest other one
        a, b = queries.default_pair()
    return render(
        request,
        "ml/models/compare.html",
        {
            "a": a,
            "b": b,
            "scorers": _scorers(),
            "chosen": chosen,
            "splits": queries.compare_scorers(a, b) if a and b else [],
            "a_measured_by_b": bool(a and b and queries.compared_with(a, b)),
            "b_measured_by_a": bool(a and b and queries.compared_with(b, a)),
        },
    )


@require_safe
@login_required
def image_origin(request, image_id: int):
    _require_admin(request.user)
    image = get_object_or_404(Image.objects.select_related("tuple__task"), pk=image_id)
    run, model = registry.image_origin(image)
    return render(
        request,
        "ml/models/image_origin.html",
        {
            "image": image,
            "run": run,
            "model": model,
            "file_url": reverse("image-file", args=[image.pk]),
        },
    )

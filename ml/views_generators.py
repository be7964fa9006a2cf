"""The generator leaderboard and the images of an evaluation (admins).

* ``generators/?version=&split=&view=discipline|task``: :func:`ml.generator_board.board`, one table per
  settings group; each row links to the evaluation's images;
* ``runs/<id>/generations/?label=model|base&task=&page=``: an ``eval_generator`` run's generations, tuple by
  tuple (8 a page): the prompts, the kept images with their SciScore and, when a judge graded them, the
  reality grade and what became of the rubric;
* ``runs/<id>/generations/<label>/<tuple>/<kind>/<n>.png``: one kept image. The storage name is built here
  from the numbers in the URL (:func:`ml.services.runs.eval_generator.image_name`), never taken from it.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from annotation import media, roles
from curation.models import DatasetVersion, VersionMember
from ml import generator_board
from ml.models import Run
from ml.services.runs.eval_generator import image_name, rows_name

TUPLES_PER_PAGE = 8
LABELS = ("model", "base")
KINDS = ("IP", "EP", "SP")


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins see the generator leaderboard.")


@require_safe
@login_required
def board(request):
    _require_admin(request.user)
    versions = list(DatasetVersion.objects.order_by("-created_at", "-id")[:200])
    raw = request.GET.get("version", "")
    version = next((v for v in versions if str(v.pk) == raw), None)
    split = request.GET.get("split", "")
    split = split if split in VersionMember.Split.values else ""
    view = request.GET.get("view", "discipline")
    view = view if view in ("discipline", "task") else "discipline"
    groups = generator_board.board(version.pk if version else None, split or None)
    for group in groups:
        names = group.disciplines if view == "discipline" else group.tasks
        group.columns = names
        for entry in group.entries:
            entry.cells = [generator_board.cell(entry, view, name) for name in names]
    return render(
        request,
        "ml/generators/board.html",
        {
            "groups": groups,
            "versions": versions,
            "version": version,
            "split": split,
            "splits": VersionMember.Split.values,
            "view": view,
        },
    )


def _eval_run(run_id: int) -> Run:
    return get_object_or_404(Run.objects.select_related("input_model"), pk=run_id, kind=Run.Kind.EVAL_GENERATOR)


@require_safe
@login_required
def generations(request, run_id: int):
    _require_admin(request.user)
    run = _eval_run(run_id)
    label = request.GET.get("label", "model")
    label = label if label in LABELS else "model"
    try:
        with default_storage.open(rows_name(run.pk, label), "rb") as handle:
            rows = json.loads(handle.read())
    except FileNotFoundError:
        rows = None
    task = request.GET.get("task", "")[:16]
    tuples: dict[int, dict] = {}
    for row in rows or []:
        if task and row.get("task") != task:
            continue
        entry = tuples.setdefault(row["tuple"], {"index": row["tuple"], "task": row.get("task", ""), "kinds": {}})
        entry["kinds"].setdefault(row["kind"], []).append(row)
    page = Paginator(sorted(tuples.values(), key=lambda t: t["index"]), TUPLES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    evaluation = run.artifacts.get("evaluation" if label == "model" else "base_evaluation") or {}
    return render(
        request,
        "ml/generators/generations.html",
        {
            "run": run,
            "label": label,
            "task": task,
            "rows_missing": rows is None,
            "page": page,
            "kinds": KINDS,
            "name": evaluation.get("name", ""),
            "tasks": sorted({row.get("task", "") for row in rows or [] if row.get("task")}),
        },
    )


@require_safe
@login_required
def generation_image(request, run_id: int, label: str, tuple_index: int, kind: str, n: int):
    _require_admin(request.user)
    if label not in LABELS or kind not in KINDS:
        raise Http404("No such image.")
    run = _eval_run(run_id)
    try:
        handle = default_storage.open(image_name(run.pk, label, tuple_index, kind, n), "rb")
    except FileNotFoundError:
        raise Http404("This image was not kept (keep_images) or is gone from the storage.") from None
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return media.harden(response, disposition="inline", filename=f"run{run.pk}-{label}-{tuple_index}-{kind}-{n}.png")

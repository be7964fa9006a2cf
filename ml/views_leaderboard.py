"""The leaderboard pages (admins): the live "Table 1" of humans and judges on a dataset version.

* ``leaderboard/?version=&view=discipline|task&split=``: the table (:mod:`ml.leaderboard`); each judge's cell
  links to the items behind it;
* ``leaderboard/items/?run=&split=&discipline=&task=&outcome=wrong|unscored``: the items of one cell of one
  judge's run, with the judge's verdict (score, its opinion of the expected image, and an LMM's answers in
  both orders), 50 a page.

Admins only, like every ml page: the per-annotator rows are people's accuracies.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from annotation import roles
from ml import leaderboard
from ml.models import JudgedItem, Run

PAGE_SIZE = 50


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins see the leaderboard.")


def _int(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 12 else None


@require_safe
@login_required
def table(request):
    _require_admin(request.user)
    versions = list(leaderboard.versions()[:200])
    wanted = _int(request, "version")
    version = next((v for v in versions if v.pk == wanted), None) if wanted else (versions[0] if versions else None)
    if wanted and version is None:
        raise Http404("No such dataset version.")
    view = request.GET.get("view", "discipline")
    view = view if view in leaderboard.VIEWS else "discipline"
    split = request.GET.get("split") or None
    data = leaderboard.table(version, view, split) if version else None
    if data:
        _link_cells(data, view)
    return render(
        request,
        "ml/leaderboard/table.html",
        {
            "versions": versions,
            "version": version,
            "view": view,
            "split": data["columns"][0].split if data and data["columns"] else None,
            "splits": list(leaderboard.SPLIT_ORDER),
            "data": data,
            "paper_source": leaderboard.PAPER_SOURCE,
        },
    )


def _link_cells(data: dict, view: str) -> None:
    """Each judge's cell links to its items."""
    base = reverse("ml:leaderboard-items")
    for row in data["judges"]:
        for column, cell in zip(data["columns"], row.cells, strict=True):
            if cell:
                query = {"run": row.run.pk, "split": column.split}
                if column.group:
                    query["task" if view == "task" else "discipline"] = column.group
                cell["href"] = f"{base}?{urlencode(query)}"


@require_safe
@login_required
def items(request):
    _require_admin(request.user)
    run_id = _int(request, "run")
    if run_id is None:
        raise Http404("Give ?run=<an eval_judge run id>.")
    run = get_object_or_404(Run.objects.select_related("input_model"), pk=run_id, kind=Run.Kind.EVAL_JUDGE)
    split, discipline, task = (request.GET.get(name, "")[:100] for name in ("split", "discipline", "task"))
    found = JudgedItem.objects.filter(run=run).select_related(
        "pair__tuple__task__discipline", "pair__image_correct", "pair__image_wrong"
    )
    if split:
        found = found.filter(split=split)
    if discipline:
        found = found.filter(pair__tuple__task__discipline__name=discipline)
    if task:
        found = found.filter(pair__tuple__task__code=task)
    outcome = request.GET.get("outcome", "")
    if outcome == "wrong":
        found = found.filter(score__lt=1.0)
    elif outcome == "unscored":
        found = found.filter(score__isnull=True)
    page = Paginator(found.order_by("split", "pair_id"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "ml/leaderboard/items.html",
        {
            "run": run,
            "split": split,
            "discipline": discipline,
            "task": task,
            "outcome": outcome,
            "page": page,
            "filters": urlencode(
                {k: v for k, v in (("split", split), ("discipline", discipline), ("task", task)) if v}
            ),
        },
    )

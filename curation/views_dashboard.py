"""The admin dashboard (/curation/dashboard/): progress, throughput, agreement, gold accuracy,
the hardest tasks and the queue's health on one server-rendered page.

The figures come from :func:`curation.services.dashboard.dashboard` (a fixed number of aggregate
queries), served as a cached snapshot refreshed in the background (:mod:`curation.services.figures`);
this module validates the filters and turns the numbers into plain geometry (percent
widths, bar heights) that the template draws as inline SVG, so the page needs no script and no
chart library.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.http import require_safe

from annotation import roles
from annotation.models import Discipline
from curation.services.dashboard import DEFAULT_DAYS, MAX_DAYS, OUTCOMES, TaskRow
from curation.services.figures import figures
from curation.tasks import refresh_figures

PROGRESS_PARTS = (
    ("judged_to_k", "judged to k"),
    ("in_progress", "in progress"),
    ("to_go", "to go"),
)
OUTCOME_LABELS = {name: name for name in OUTCOMES}

# The sparkline's drawing box (user units; CSS sets the size on screen).
SPARK_HEIGHT = 24
SPARK_BAR = 10  # one day's slot; the bar leaves a gap of 2 units
SPARK_GAP = 2


class DashboardFilterForm(forms.Form):
    discipline = forms.ModelChoiceField(
        Discipline.objects.all(), to_field_name="slug", required=False, empty_label="all disciplines"
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_DAYS,
        required=False,
        label="Days",
        help_text=f"1–{MAX_DAYS}, default {DEFAULT_DAYS}",
        widget=forms.NumberInput(attrs={"placeholder": DEFAULT_DAYS}),
    )


def stacked(parts: list[tuple[str, str, int]]) -> list[dict]:
    """Segments of a 100 %-wide horizontal bar: ``(key, label, value)`` → key, label, value, x, width (percent).

    Empty parts are left out; widths add up to 100 when anything is non-zero.
    """
    total = sum(value for _, _, value in parts)
    segments, x = [], 0.0
    for key, label, value in parts:
        if not value:
            continue
        width = 100 * value / total
        segments.append({"key": key, "label": label, "value": value, "x": round(x, 3), "width": round(width, 3)})
        x += width
    return segments


def _progress_bar(row: TaskRow) -> list[dict]:
    return stacked([(key, label, getattr(row, key)) for key, label in PROGRESS_PARTS])


def _outcome_bar(row: TaskRow) -> list[dict]:
    return stacked([(name, OUTCOME_LABELS[name], row.outcomes[name]) for name in OUTCOMES])


def sparkline(per_day: list[int], days: list, scale: int) -> dict:
    """Bars for one annotator's judgements per day, all annotators on one ``scale`` (the largest day)."""
    bars = []
    for index, (day, n) in enumerate(zip(days, per_day, strict=True)):
        height = round(SPARK_HEIGHT * n / scale, 2) if scale else 0
        if n and height < 1:
            height = 1  # a day with judgements stays visible
        bars.append(
            {
                "x": index * SPARK_BAR,
                "y": round(SPARK_HEIGHT - height, 2),
                "width": SPARK_BAR - SPARK_GAP,
                "height": height,
                "day": day,
                "n": n,
            }
        )
    return {"bars": bars, "width": len(days) * SPARK_BAR, "height": SPARK_HEIGHT}


def _label(segments: list[dict], prefix: str) -> str:
    return f"{prefix}: " + (", ".join(f"{s['value']} {s['label']}" for s in segments) or "nothing yet")


@require_safe
@login_required
def dashboard_page(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins see the dashboard.")
    form = DashboardFilterForm(request.GET)
    form.is_valid()  # a bad value is shown as an error and left out; the valid filters still apply
    discipline = form.cleaned_data.get("discipline")
    days = form.cleaned_data.get("days") or DEFAULT_DAYS
    snapshot = figures(
        "dashboard", celery_task=refresh_figures, discipline=discipline.slug if discipline else None, days=days
    )
    board = snapshot.value

    tasks = []
    for row in board.tasks:
        progress, outcomes = _progress_bar(row), _outcome_bar(row)
        tasks.append(
            {
                "row": row,
                "progress": progress,
                "progress_label": _label(progress, f"{row.code} progress, {row.pairs} pairs"),
                "outcomes": outcomes,
                "outcomes_label": _label(outcomes, f"{row.code} outcomes, {row.outcome_total} pairs"),
            }
        )
    scale = max((row.best for row in board.throughput), default=0)
    everyone = board.throughput_per_day
    throughput = [{"row": row, "spark": sparkline(row.per_day, board.days, scale)} for row in board.throughput]
    threshold = settings.GOLD_MIN_ACCURACY
    quality = [
        {
            **row,
            "percent": round(100 * row["accuracy"], 1),
            "below": row["accuracy"] < threshold and row["judged"] >= settings.GOLD_MIN_ITEMS,
        }
        for row in board.quality
    ]
    totals = board.totals
    return render(
        request,
        "curation/dashboard.html",
        {
            "form": form,
            "discipline": discipline,
            "board": board,
            "snapshot": snapshot,
            "days": days,
            "totals": totals,
            "totals_progress": _progress_bar(totals),
            "tasks": tasks,
            "throughput": throughput,
            "throughput_all": {
                "per_day": everyone,
                "total": sum(everyone),
                "best": max(everyone, default=0),
                "active_days": sum(1 for n in everyone if n),
                "spark": sparkline(everyone, board.days, max(everyone, default=0)),
            },
            "quality": quality,
            "gold_threshold": round(100 * threshold, 1),
            "gold_min_items": settings.GOLD_MIN_ITEMS,
            "progress_parts": PROGRESS_PARTS,
            "outcome_names": OUTCOMES,
        },
    )

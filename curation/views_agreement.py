"""The agreement page (reviewers and admins): α and κ per task, discipline and overall, the
pairwise Cohen's κ matrix and each annotator's agreement with consensus.

The figures are those of :func:`curation.services.agreement.agreement_report`, served as a cached
snapshot refreshed in the background (:mod:`curation.services.figures`); this module only shapes them
for the template. The matrix
is coloured by CSS classes named after the Landis & Koch (1977) bands of κ, so the page needs no
script.
"""

from __future__ import annotations

import math

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views.decorators.http import require_safe

from annotation import roles
from annotation.models import Discipline, Task
from curation.services.agreement import DEFAULT_MIN_SHARED
from curation.services.figures import figures
from curation.tasks import refresh_figures

# Landis, J. R. & Koch, G. G. (1977), Biometrics 33(1): 159–174: the bands of κ by their upper
# bound (inclusive, except that 0 itself is already "slight").
BANDS = (
    (0.0, "poor"),  # below 0: less than chance agreement
    (0.2, "slight"),
    (0.4, "fair"),
    (0.6, "moderate"),
    (0.8, "substantial"),
    (math.inf, "almost-perfect"),  # up to 1; inf so that rounding above 1 still lands here
)


class AgreementFilterForm(forms.Form):
    task = forms.ModelChoiceField(Task.objects.all(), to_field_name="code", required=False, empty_label="all tasks")
    discipline = forms.ModelChoiceField(
        Discipline.objects.all(), to_field_name="slug", required=False, empty_label="all disciplines"
    )
    min_shared = forms.IntegerField(
        min_value=1, required=False, label="Cohen's κ from shared pairs", help_text=f"default {DEFAULT_MIN_SHARED}"
    )


def band(value: float | None) -> str:
    """The Landis & Koch band of a κ or α, or ``undefined`` for None."""
    if value is None:
        return "undefined"
    if value < 0:
        return BANDS[0][1]
    return next(name for upper, name in BANDS[1:] if value <= upper)


def _summary_rows(report: dict) -> list[dict]:
    """Overall, then each discipline, then each task: one table row each."""
    return [
        {"scope": "overall", "key": "", "name": "All judgements", "group": report["overall"]},
        *(
            {"scope": "discipline", "key": row["discipline"], "name": row["name"], "group": row}
            for row in report["disciplines"]
        ),
        *({"scope": "task", "key": row["task"], "name": row["name"], "group": row} for row in report["tasks"]),
    ]


def _matrix_rows(cohen: dict) -> list[dict]:
    return [
        {
            "annotator": annotator,
            "cells": [{**cell, "band": band(cell["value"]), "self": i == j} for j, cell in enumerate(row)],
        }
        for i, (annotator, row) in enumerate(zip(cohen["annotators"], cohen["matrix"], strict=True))
    ]


@require_safe
@login_required
def agreement(request):
    if not roles.is_reviewer(request.user):
        raise PermissionDenied("Only reviewers and admins see agreement figures.")
    form = AgreementFilterForm(request.GET)
    form.is_valid()  # a bad value is shown as an error and left out; the valid filters still apply
    filters = form.cleaned_data
    task, discipline = filters.get("task"), filters.get("discipline")
    snapshot = figures(
        "agreement",
        celery_task=refresh_figures,
        task=task.code if task else None,
        discipline=discipline.slug if discipline else None,
        min_shared=filters.get("min_shared") or DEFAULT_MIN_SHARED,
    )
    report = snapshot.value
    return render(
        request,
        "curation/agreement.html",
        {
            "form": form,
            "report": report,
            "snapshot": snapshot,
            "summary": _summary_rows(report),
            "matrix": _matrix_rows(report["cohen"]),
            "bands": [name for _, name in BANDS],
        },
    )

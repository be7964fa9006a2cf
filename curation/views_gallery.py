"""The pair gallery (/curation/pairs/): thumbnails of pairs with filters, for reviewers and admins.

Thin: the filters are validated by a form, the pairs come from
:func:`curation.services.adjudication.gallery_pairs`. Thumbnails are the images themselves served by the
reviewers' image endpoint (/api/images/<id>/file/), shown at 160 px and loaded lazily. Each pair links to its
adjudication page and, for admins, to the origin page of each image (ml's /ml/images/<id>/origin/: which run
and model made it).

The ml filters (the run that generated a pair's images, disagreement with the active scorer) are ml's: curation
never imports ml. ml/views_gallery.py serves the same page with them at /ml/pairs/ (admins), through
:func:`filtered_pairs` and :func:`render_gallery`; this page links there for admins.
"""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_safe

from annotation import roles
from annotation.models import Discipline, Task
from curation.services import adjudication as service
from curation.views import reviewer_required

PAGE_SIZE = 24


class GalleryFilterForm(forms.Form):
    task = forms.ModelChoiceField(Task.objects.all(), to_field_name="code", required=False, empty_label="all tasks")
    discipline = forms.ModelChoiceField(
        Discipline.objects.all(), to_field_name="slug", required=False, empty_label="all disciplines"
    )
    outcome = forms.ChoiceField(
        choices=[("", "any outcome"), *((value, value) for value in service.GALLERY_OUTCOMES)], required=False
    )
    flagged = forms.BooleanField(required=False, label="Only flagged pairs")


@require_safe
@reviewer_required
def gallery(request):
    form = GalleryFilterForm(request.GET)
    return render_gallery(request, form, filtered_pairs(form))


def filtered_pairs(form: GalleryFilterForm):
    """The pairs the form's curation filters select. An invalid value is shown as an error and left out; the valid
    filters still apply."""
    form.is_valid()
    data = form.cleaned_data
    return service.gallery_pairs(
        task=data["task"].code if data.get("task") else None,
        discipline=data["discipline"].slug if data.get("discipline") else None,
        outcome=data.get("outcome") or None,
        flagged=bool(data.get("flagged")),
    )


def render_gallery(request, form: GalleryFilterForm, pairs, extra: dict | None = None):
    """The gallery page of ``pairs`` (paginated) under ``form``; ``extra``: more template context (ml's page passes
    ``ml_filters`` and ``active_scorer``)."""
    page = Paginator(pairs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "curation/gallery.html",
        {
            "filter_form": form,
            "page": page,
            "filter_query": query.urlencode(),
            "is_admin": roles.is_admin(request.user),
            **(extra or {}),
        },
    )

"""The pair gallery (/curation/pairs/): thumbnails of pairs with filters, for reviewers and admins.

Thin: the filters are validated by a form, the pairs come from
:func:`curation.services.adjudication.gallery_pairs`. Thumbnails are the images themselves served by the
reviewers' image endpoint (/api/images/<id>/file/), shown at 160 px and loaded lazily. Each pair links to its
adjudication page and, for admins, to the origin page of each image (ml's /ml/images/<id>/origin/: which run
and model made it).

The ml filters the issue asks for (the generating run, disagreement with the active scorer) are not here:
curation never imports ml, and a filter on them would have to be ml's.
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
    form.is_valid()  # an invalid value is shown as an error and left out; the valid filters still apply
    data = form.cleaned_data
    pairs = service.gallery_pairs(
        task=data["task"].code if data.get("task") else None,
        discipline=data["discipline"].slug if data.get("discipline") else None,
        outcome=data.get("outcome") or None,
        flagged=bool(data.get("flagged")),
    )
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
        },
    )

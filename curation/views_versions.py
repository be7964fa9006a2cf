"""Dataset-version pages under /curation/versions/: list, builder, detail and diff.

Reviewers and admins read; only admins build (the builder page answers 403 to others). Every
page costs a fixed number of queries whatever the size of a version: counts come from the
version's frozen ``counts`` and from one aggregate query for the builder's preview
(:func:`curation.services.versions.preview_counts`); the diff is two value queries.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from annotation import roles
from annotation.models import Discipline, Task
from curation import views_jobs
from curation.models import DatasetVersion
from curation.services import splits, versions

PAGE_SIZE = 50
DIFF_ROWS = 200  # rows listed per kind of change; the counts are always complete


def _require_reviewer(user):
    if not roles.is_reviewer(user):
        raise PermissionDenied("Only reviewers and admins see dataset versions.")


def _id_list(text: str) -> list[int]:
    try:
        return sorted({int(item) for item in text.replace(" ", ",").split(",") if item.strip()})
    except ValueError:
        raise forms.ValidationError("comma-separated ids, e.g. 12,40") from None


class VersionForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="Required to freeze; unique.")
    tasks = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: all tasks."
    )
    disciplines = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: all disciplines."
    )
    outcomes = forms.MultipleChoiceField(
        choices=[(o, o) for o in versions.SELECTABLE_OUTCOMES],
        initial=list(versions.DEFAULT_OUTCOMES),
        widget=forms.CheckboxSelectMultiple,
        help_text="Pending and disputed pairs have no label; both/neither labels come only with rejected.",
    )
    min_agreement = forms.FloatField(
        required=False, min_value=0, max_value=1, help_text="0..1; adjudicated pairs are exempt."
    )
    exclude_pairs = forms.CharField(required=False, help_text="Pair ids, comma-separated.")
    exclude_tuples = forms.CharField(required=False, help_text="Tuple ids, comma-separated.")
    seed = forms.IntegerField(initial=0, required=False)
    train = forms.FloatField(initial=0.8, min_value=0, max_value=1, required=False)
    validation = forms.FloatField(initial=0.1, min_value=0, max_value=1, required=False)
    test = forms.FloatField(
        initial=0.1,
        min_value=0,
        max_value=1,
        required=False,
        help_text="Within simple scenes (test_S) and within complex scenes (test_C).",
    )
    parent = forms.ChoiceField(required=False, help_text="Whose split assignments to keep.")
    keep_imported_splits = forms.BooleanField(
        required=False,
        initial=True,
        label="Keep imported splits",
        help_text="Imported pairs keep the split they came from (a published test set stays a test set).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tasks"].choices = [
            (code, f"{code} {name}") for code, name in Task.objects.order_by("code").values_list("code", "name")
        ]
        self.fields["disciplines"].choices = list(Discipline.objects.order_by("name").values_list("slug", "name"))
        self.fields["parent"].choices = [("", "the latest version"), ("none", "none (fresh splits)")] + [
            (str(pk), name)
            for pk, name in DatasetVersion.objects.order_by("-created_at", "-id").values_list("pk", "name")[:200]
        ]

    def clean_exclude_pairs(self):
        return _id_list(self.cleaned_data["exclude_pairs"])

    def clean_exclude_tuples(self):
        return _id_list(self.cleaned_data["exclude_tuples"])

    def clean(self):
        data = super().clean()
        ratios = [data.get(name) for name in splits.RATIO_KEYS]
        ratios = [0.8, 0.1, 0.1] if all(r is None for r in ratios) else [r or 0.0 for r in ratios]
        try:
            data["ratios"] = splits.normalise_ratios(ratios)
        except splits.BadRatios as exc:
            self.add_error("test", str(exc))
        return data

    def filter_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "tasks": data["tasks"],
            "disciplines": data["disciplines"],
            "outcomes": data["outcomes"],
            "min_agreement": data["min_agreement"],
            "exclude_pairs": data["exclude_pairs"],
            "exclude_tuples": data["exclude_tuples"],
        }

    def parent_value(self):
        value = self.cleaned_data.get("parent") or ""
        if value == "":
            return versions.LATEST
        if value == "none":
            return None
        return DatasetVersion.objects.get(pk=int(value))


def _count_rows(counts: dict) -> list[dict]:
    """Task rows of the counts table, each with its split cells in the published order."""
    return [
        {"task": task, "cells": [row.get(split, 0) for split in splits.SPLITS], "total": row.get("total", 0)}
        for task, row in counts.get("tasks", {}).items()
    ]


@require_safe
@login_required
def version_list(request):
    _require_reviewer(request.user)
    page = Paginator(
        DatasetVersion.objects.select_related("created_by", "parent").order_by("-created_at", "-id"), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "curation/versions_list.html",
        {"page": page, "splits": splits.SPLITS, "can_build": roles.is_admin(request.user)},
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def version_new(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins build dataset versions.")
    preview, error = None, None
    # Both buttons post the form (a GET form would put the CSRF token and the filters in the URL and the
    # server log): "Preview counts" only counts, "Freeze version" builds.
    form = VersionForm(request.POST if request.method == "POST" else None)
    previewing = "preview" in request.POST
    if form.is_bound and form.is_valid():
        try:
            filters = versions.clean_filters(**form.filter_kwargs())
            if not previewing:
                version = versions.build_version(
                    request.user,
                    form.cleaned_data["name"],
                    **form.filter_kwargs(),
                    ratios=form.cleaned_data["ratios"],
                    seed=form.cleaned_data["seed"] or 0,
                    parent=form.parent_value(),
                    keep_imported_splits=form.cleaned_data["keep_imported_splits"],
                )
                messages.success(request, f"Version {version.name} frozen with {version.counts['total']} pairs.")
                return redirect("curation:version-detail", version_id=version.pk)
            counts = versions.preview_counts(filters)
            preview = {"tasks": sorted(counts.items()), "total": sum(counts.values())}
        except versions.VersionError as exc:
            error = str(exc)
    return render(
        request,
        "curation/versions_new.html",
        {"form": form, "preview": preview, "error": error},
        status=400 if error and request.method == "POST" and not previewing else 200,
    )


@require_safe
@login_required
def version_detail(request, version_id: int):
    _require_reviewer(request.user)
    version = get_object_or_404(DatasetVersion.objects.select_related("created_by", "parent"), pk=version_id)
    children = list(version.children.order_by("-created_at", "-id").values("pk", "name")[:20])
    return render(
        request,
        "curation/versions_detail.html",
        {
            "version": version,
            "splits": splits.SPLITS,
            "rows": _count_rows(version.counts),
            "split_totals": [version.counts.get("splits", {}).get(split, 0) for split in splits.SPLITS],
            "children": children,
            "exports": views_jobs.version_exports(version) if roles.is_admin(request.user) else None,
        },
    )


@require_safe
@login_required
def version_diff(request, a: int, b: int):
    _require_reviewer(request.user)
    found = DatasetVersion.objects.in_bulk([a, b])
    if a not in found or b not in found:
        raise Http404("No such version.")
    diff = versions.diff_versions(a, b)
    shown = {name: diff[name][:DIFF_ROWS] for name in ("added", "removed", "relabelled", "moved")}
    return render(
        request,
        "curation/versions_diff.html",
        {
            "old": found[a],
            "new": found[b],
            "diff": diff,
            "shown": shown,
            "limit": DIFF_ROWS,
        },
    )

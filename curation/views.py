"""The reviewer's adjudication pages: the review list and one pair with the decision form.

Thin views over :mod:`curation.services.adjudication`. Reviewers and admins only (403 for other
roles, the login page for anonymous users). The list filters travel in the query string from the
list to the item and on to the next item, so a reviewer works through one filtered list.
"""

from __future__ import annotations

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from annotation import roles
from annotation.models import Pair, Task
from curation.models import Label
from curation.services import adjudication as service

PAGE_SIZE = 50


def reviewer_required(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not roles.is_reviewer(request.user):
            raise PermissionDenied("Only reviewers and admins adjudicate pairs.")
        return view(request, *args, **kwargs)

    return wrapper


class QueueFilterForm(forms.Form):
    task = forms.ModelChoiceField(Task.objects.all(), to_field_name="code", required=False, empty_label="all tasks")
    outcome = forms.ChoiceField(
        choices=[("", "disputed and reversed"), *((o.value, o.label) for o in service.REVIEW_OUTCOMES)],
        required=False,
    )
    flagged = forms.BooleanField(required=False, label="Only flagged pairs")


class AdjudicationForm(forms.Form):
    label = forms.ChoiceField(choices=Label.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=service.COMMENT_MAX_LENGTH
    )


def _filters(request) -> tuple[QueueFilterForm, dict]:
    """The list filters of the query string; invalid values are shown as errors and ignored."""
    form = QueueFilterForm(request.GET)
    if not form.is_valid():
        return form, {}
    task = form.cleaned_data["task"]
    return form, {
        "task": task.code if task else None,
        "outcome": form.cleaned_data["outcome"] or None,
        "flagged": form.cleaned_data["flagged"],
    }


def _with_query(url: str, request) -> str:
    query = request.GET.urlencode()
    return f"{url}?{query}" if query else url


@require_safe
@reviewer_required
def adjudication_list(request):
    form, filters = _filters(request)
    page = Paginator(service.review_queue(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "curation/adjudication_list.html",
        {
            "filter_form": form,
            "page": page,
            "totals": service.queue_totals(task=filters.get("task")),
            "flagged_total": service.flagged_waiting(task=filters.get("task")),
            "filter_query": query.urlencode(),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@reviewer_required
def adjudication_detail(request, pair_id: int):
    try:
        item = service.review_item(pair_id)
    except Pair.DoesNotExist:
        raise Http404("No such pair.") from None
    form = AdjudicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, filters = _filters(request)
        following = service.next_in_queue(service.review_queue(**filters), pair_id)  # before: see its docstring
        try:
            decision = service.adjudicate(request.user, pair_id, **form.cleaned_data)
        except service.InvalidAdjudication as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Pair {pair_id}: {decision.get_label_display()}.")
            target = (
                reverse("curation:adjudication-detail", args=[following.pair_id])
                if following
                else reverse("curation:adjudication-list")
            )
            return redirect(_with_query(target, request))
    _, filters = _filters(request)
    following = service.next_in_queue(service.review_queue(**filters), pair_id)
    return render(
        request,
        "curation/adjudication_detail.html",
        {
            **item,
            "form": form,
            "list_url": _with_query(reverse("curation:adjudication-list"), request),
            "flags": _flag_summary(item["judgements"]),
            "script": {
                "pair": pair_id,
                "next": following.pair_id if following else None,
                "query": request.GET.urlencode(),
                "data": reverse("curation:adjudication-data", args=[0]).replace("/0/", "/{id}/"),
                "page": reverse("curation:adjudication-detail", args=[0]).replace("/0/", "/{id}/"),
                "decide": reverse("curation-adjudication-list"),
                "list": reverse("curation:adjudication-list"),
            },
        },
    )


def _flag_summary(judgements) -> dict:
    """What the top of the page says about flags and comments: counts per flag, and the comments."""
    counts = {"prompt unclear": 0, "image broken": 0, "off-topic": 0}
    for row in judgements:
        j = row.judgement
        counts["prompt unclear"] += j.flag_prompt_unclear
        counts["image broken"] += j.flag_image_broken
        counts["off-topic"] += j.flag_off_topic
    return {
        "counts": {name: n for name, n in counts.items() if n},
        "comments": [
            (row.judgement.annotator.get_username(), row.judgement.comment)
            for row in judgements
            if row.judgement.comment
        ],
    }

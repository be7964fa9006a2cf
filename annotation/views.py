"""The annotator's browser pages: home and the annotate shell.

Thin views. The annotate page is only a shell: static/js/annotate.js drives the queue API
(annotation/api_queue.py) with the session cookie and the CSRF token rendered here, so the page
and any other client go through exactly the same rules.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from annotation import roles
from annotation.stats import annotator_stats

# The JS fills a lease id into these; "0" is a placeholder that reverse() accepts for <int:...>.
_LEASE_ENDPOINTS = ("lease-judgement", "lease-heartbeat", "lease-release")


@require_safe
@login_required
def home(request):
    """Annotators see their progress; reviewers and admins get links to their tools."""
    context = {"is_annotator": roles.is_annotator(request.user), "is_reviewer": roles.is_reviewer(request.user)}
    if context["is_annotator"]:
        context["stats"] = annotator_stats(request.user)
    return render(request, "annotation/home.html", context)


@require_safe
@login_required
def annotate(request):
    if not roles.is_annotator(request.user):
        raise PermissionDenied("Only annotators judge pairs.")
    endpoints = {
        "next": reverse("queue-next"),
        "undo": reverse("judgement-undo"),
        **{name.removeprefix("lease-"): reverse(name, args=[0]).replace("/0/", "/{id}/") for name in _LEASE_ENDPOINTS},
    }
    filters = {key: request.GET[key] for key in ("task", "discipline") if request.GET.get(key)}
    return render(request, "annotation/annotate.html", {"endpoints": endpoints, "filters": filters})

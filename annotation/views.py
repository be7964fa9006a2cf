"""The annotator's browser pages: home, the annotate shell, task guides and their recent judgements.

Thin views. The annotate page is only a shell: static/js/annotate.js drives the queue API
(annotation/api_queue.py) with the session cookie and the CSRF token rendered here, so the page
and any other client go through exactly the same rules.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from annotation import markdown, roles
from annotation.models import GuideExample, Judgement, TaskGuide
from annotation.services import guides
from annotation.services.queue import allowed_tasks
from annotation.stats import annotator_stats

# The JS fills a lease id into these; "0" is a placeholder that reverse() accepts for <int:...>.
_LEASE_ENDPOINTS = ("lease-judgement", "lease-heartbeat", "lease-release")
JUDGEMENTS_PER_PAGE = 20


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
        "progress": reverse("my-progress"),
        "guide": reverse("guide", args=["CODE"]).replace("CODE", "{code}"),
        **{name.removeprefix("lease-"): reverse(name, args=[0]).replace("/0/", "/{id}/") for name in _LEASE_ENDPOINTS},
    }
    filters = {key: request.GET[key] for key in ("task", "discipline") if request.GET.get(key)}
    # Every guide the annotator may need, rendered once with the page: switching task costs no request.
    task_guides = list(TaskGuide.objects.filter(task_id__in=allowed_tasks(request.user)).select_related("task"))
    guides = [(guide.task.code, markdown.render(guide.body)) for guide in task_guides]
    reasons = {guide.task.code: guide.reasons for guide in task_guides}
    stats = annotator_stats(request.user)
    context = {
        "endpoints": endpoints,
        "filters": filters,
        "guides": guides,
        "reasons": reasons,
        "progress": {"judged_today": stats.judged_today, "left": stats.pairs_left},
        "stats": stats,  # the empty state says which qualifications are under way or failed
    }
    return render(request, "annotation/annotate.html", context)


@require_safe
@login_required
def guide(request, code: str):
    """A task's guide as annotators read it: the Markdown, the reasons and the worked examples."""
    task = guides.readable_task(request.user, code)
    if task is None:
        raise Http404("No guide for you here.")
    task_guide = TaskGuide.objects.filter(task=task).first()
    examples = GuideExample.objects.filter(guide=task_guide).select_related("pair__tuple") if task_guide else []
    context = {
        "task": task,
        "guide": task_guide,
        "body": markdown.render(task_guide.body) if task_guide else "",
        "examples": examples,
        "can_edit": roles.is_admin(request.user),
    }
    return render(request, "annotation/guide.html", context)


@require_safe
@login_required
def my_judgements(request):
    """The annotator's own judgements, newest first: prompt, both images as they saw them, their answer.
    Never anyone else's, nor consensus, gold or the expected image."""
    if not roles.is_annotator(request.user):
        raise PermissionDenied("Only annotators have judgements.")
    rows = (
        Judgement.objects.filter(annotator=request.user)
        .select_related("pair__tuple__task", "lease")
        .only(
            "id",
            "choice",
            "flag_prompt_unclear",
            "flag_image_broken",
            "flag_off_topic",
            "comment",
            "confidence",
            "reasons",
            "created_at",
            "lease_id",
            "pair__id",
            "pair__tuple__implicit_prompt",
            "pair__tuple__task__code",
            "pair__tuple__task__name",
        )
        .order_by("-created_at", "-id")
    )
    page = Paginator(rows, JUDGEMENTS_PER_PAGE).get_page(request.GET.get("page"))
    undo_after = timezone.now() - settings.UNDO_WINDOW
    context = {"page": page, "undo_after": undo_after, "undo_minutes": int(settings.UNDO_WINDOW.total_seconds() // 60)}
    return render(request, "annotation/my_judgements.html", context)

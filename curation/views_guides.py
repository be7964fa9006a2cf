"""Admin pages for task guides under /curation/guides/: the Markdown, the reasons and the worked examples; and
the annotator's session feedback under /curation/sessions/ (attention checks, once a session has ended).

Thin views: parse the form, call :mod:`annotation.services.guides` (the guide and its reasons) or
:func:`curation.services.consensus.add_worked_example` (an example needs a decided pair, which curation
knows), redirect. Annotators read the guides on their own pages (annotation/views.py).

The same page holds the task's qualification set: its gold pairs, each added to the set or taken out
(:func:`curation.services.gold.set_qualification`), and each annotator's qualification with an admin's
decision (:func:`annotation.services.qualification.decide`).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from annotation import markdown, roles
from annotation.models import EXAMPLE_NOTE_MAX_CHARS, GUIDE_MAX_CHARS, GuideExample, Task, TaskGuide
from annotation.services import guides, qualification, sessions
from curation.models import GoldItem
from curation.services import consensus, gold

CANDIDATES_PER_PAGE = 12
GOLD_SHOWN = 60  # gold pairs listed for the qualification set: the set's first, then the newest others


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins edit task guides.")


class GuideForm(forms.Form):
    body = forms.CharField(
        required=False,
        max_length=GUIDE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 14}),
        label="Guide (Markdown)",
        help_text="What counts as correct, what to ignore. Markdown; HTML is shown as text.",
    )
    reasons = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 5}),
        label="Reasons (one per line)",
        help_text="Short labels an annotator may tick with a judgement.",
    )


class QualificationPairForm(forms.Form):
    pair = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    on = forms.TypedChoiceField(choices=[("1", "add"), ("0", "remove")], coerce=lambda value: value == "1")


class QualificationDecisionForm(forms.Form):
    passed = forms.TypedChoiceField(choices=[("1", "let pass"), ("0", "fail")], coerce=lambda value: value == "1")


class ExampleForm(forms.Form):
    pair = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    note = forms.CharField(required=False, max_length=EXAMPLE_NOTE_MAX_CHARS)


@require_safe
@login_required
def guide_list(request):
    _require_admin(request.user)
    tasks = Task.objects.select_related("discipline").order_by("discipline__name", "code")
    by_task = {guide.task_id: guide for guide in TaskGuide.objects.annotate(n_examples=Count("examples")).order_by()}
    rows = [(task, by_task.get(task.pk)) for task in tasks]
    return render(request, "curation/guides_list.html", {"rows": rows})


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def guide_edit(request, code: str):
    _require_admin(request.user)
    task = get_object_or_404(Task.objects.select_related("discipline"), code=code)
    guide = guides.guide_of(task)
    if request.method == "POST":
        form = GuideForm(request.POST)
        if form.is_valid():
            try:
                guides.save_guide(
                    request.user,
                    task,
                    body=form.cleaned_data["body"].replace("\r\n", "\n"),
                    reasons=form.cleaned_data["reasons"].splitlines(),
                )
            except guides.GuideError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Guide of {task.code} saved.")
                return redirect("curation:guide-edit", code=task.code)
    else:
        form = GuideForm(initial={"body": guide.body, "reasons": "\n".join(guide.reasons)})
    examples = (
        GuideExample.objects.filter(guide__task=task).select_related("pair__tuple")
        if guide.pk
        else GuideExample.objects.none()
    )
    page = Paginator(consensus.example_candidates(task.pk), CANDIDATES_PER_PAGE).get_page(request.GET.get("page"))
    candidates = [(row, consensus.right_image_of(row.pair, row)) for row in page.object_list]
    context = {
        "task": task,
        "guide": guide,
        "form": form,
        "preview": markdown.render(guide.body),
        "examples": examples,
        "page": page,
        "candidates": candidates,
        "note_max": EXAMPLE_NOTE_MAX_CHARS,
        **_qualification_context(task),
    }
    return render(request, "curation/guides_edit.html", context, status=400 if form.errors else 200)


def _qualification_context(task: Task) -> dict:
    gold_items = (
        GoldItem.objects.filter(pair__tuple__task=task)
        .select_related("pair__tuple")
        .order_by("-pair__is_qualification", "-created_at", "-id")[:GOLD_SHOWN]
    )
    return {
        "gold_items": gold_items,
        "set_size": qualification.set_pairs(task).count(),
        "threshold": round(100 * settings.QUALIFICATION_MIN_ACCURACY),
        "qualified": qualification.task_overview(task),
    }


@require_POST
@login_required
def qualification_pair(request, code: str):
    """Add a gold pair of this task to its qualification set, or take it out."""
    _require_admin(request.user)
    task = get_object_or_404(Task, code=code)
    form = QualificationPairForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a gold pair of this task and whether to add or remove it.")
        return redirect("curation:guide-edit", code=task.code)
    pair_id, on = form.cleaned_data["pair"], form.cleaned_data["on"]
    if not GoldItem.objects.filter(pair_id=pair_id, pair__tuple__task=task).exists():
        messages.error(request, f"Pair {pair_id} is not a gold pair of {task.code}.")
        return redirect("curation:guide-edit", code=task.code)
    gold.set_qualification(request.user, pair_id, on)
    messages.success(
        request, f"Pair {pair_id} {'added to' if on else 'taken out of'} the qualification set of {task.code}."
    )
    return redirect(reverse("curation:guide-edit", args=[task.code]) + "#qualification")


@require_POST
@login_required
def qualification_decide(request, code: str, user_id: int):
    """An admin lets an annotator pass this task's qualification, or fails them."""
    _require_admin(request.user)
    task = get_object_or_404(Task, code=code)
    user = get_object_or_404(get_user_model(), pk=user_id)
    if not roles.is_annotator(user):
        raise Http404("Not an annotator.")
    form = QualificationDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say whether to let the annotator pass or fail them.")
        return redirect("curation:guide-edit", code=task.code)
    passed = form.cleaned_data["passed"]
    qualification.decide(request.user, user, task, passed)
    verdict = "may now work on" if passed else "is stopped on"
    messages.success(request, f"{user.get_username()} {verdict} {task.code}.")
    return redirect(reverse("curation:guide-edit", args=[task.code]) + "#qualification")


@require_POST
@login_required
def example_add(request, code: str):
    _require_admin(request.user)
    task = get_object_or_404(Task, code=code)
    form = ExampleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Give a pair id and a note of at most {EXAMPLE_NOTE_MAX_CHARS} characters.")
        return redirect("curation:guide-edit", code=task.code)
    try:
        consensus.add_worked_example(request.user, task, form.cleaned_data["pair"], note=form.cleaned_data["note"])
    except guides.GuideError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Pair {form.cleaned_data['pair']} is now a worked example.")
    return redirect("curation:guide-edit", code=task.code)


@require_POST
@login_required
def example_remove(request, code: str, example_id: int):
    _require_admin(request.user)
    task = get_object_or_404(Task, code=code)
    try:
        guides.remove_example(request.user, task, example_id)
    except guides.GuideError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Worked example removed.")
    return redirect("curation:guide-edit", code=task.code)


# --- Session feedback for annotators (/curation/sessions/) ---------------------------------------
# Here rather than in annotation: the report reads gold items, which curation owns.


def _require_annotator(user) -> None:
    if not roles.is_annotator(user):
        raise PermissionDenied("Only annotators have sessions.")


@require_safe
@login_required
def session_reports(request):
    """The annotator's latest ended sessions with their attention-check results (gold revealed only once ended)."""
    _require_annotator(request.user)
    reports = [gold.session_report(request.user, start, end) for start, end in sessions.ended_sessions(request.user)]
    return render(request, "curation/sessions.html", {"reports": reports})


@require_POST
@login_required
def session_end(request):
    _require_annotator(request.user)
    sessions.end_session(request.user)
    return redirect("curation:session-reports")

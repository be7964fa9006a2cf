"""Schedule pages under /ml/schedules/: list, new, edit, delete (with confirmation), pause, resume, run now.

Admins only (403 for everyone else, login required); every change is a CSRF-protected POST through
:mod:`ml.services.schedules`, whose errors are shown next to their fields. The params field is a
JSON object, prefilled with the kind's defaults from :func:`ml.services.runs.kinds.describe`
(references such as ``model`` start as null: they have no default).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from annotation import roles
from ml.models import Schedule
from ml.services import schedules
from ml.services.runs import RunParamsError, kinds
from ml.tasks import execute_run


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins manage schedules.")


def default_params(kind: str) -> dict:
    return {field["name"]: field.get("default") for field in kinds.describe(kind)}


def params_text(kind: str, params: dict) -> str:
    """``params`` as indented JSON in the kind's own order (the database keeps its own key order)."""
    order = [name for name in default_params(kind) if name in params] if kind in kinds.available() else []
    return json.dumps({**{name: params[name] for name in order}, **params}, indent=2)


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField()
    trigger = forms.ChoiceField(
        choices=Schedule.Trigger.choices, widget=forms.RadioSelect, initial=Schedule.Trigger.CRON
    )
    cron = forms.CharField(
        required=False,
        max_length=100,
        help_text="For cron: minute hour day-of-month month day-of-week, in UTC; e.g. 0 3 * * 1-5 (03:00 on weekdays).",
    )
    min_new_pairs = forms.IntegerField(
        required=False,
        help_text="For new confirmed pairs: start a run once at "
        "least this many pairs were confirmed since the last successful run of "
        "this kind.",
    )
    check_every_minutes = forms.IntegerField(initial=10, help_text="How often the data trigger is checked.")
    params = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 60, "spellcheck": "false"}),
        help_text="A JSON object; unknown keys are refused, missing ones take their default. "
        f'"{schedules.ROTATE_SEED}": true (kinds with a seed) gives each firing its own seeds: the run\'s seed is '
        "this seed plus the schedule's fire count (the runs it made before) times images_per_prompt. Without it "
        "every firing of a generate schedule makes the same images again, so nothing new.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(kind, kind) for kind in kinds.available()]

    def clean_params(self):
        try:
            value = json.loads(self.cleaned_data["params"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def add_service_errors(self, exc: schedules.ScheduleError) -> None:
        for name, message in exc.errors.items():
            if name == "params":
                for param, text in message.items():
                    self.add_error("params", f"{param}: {text}")
            else:
                self.add_error(name, message)


def _repeats_itself(form: ScheduleForm) -> bool:
    """Whether the template on the form (as posted, or as it starts) makes the same run at every firing."""
    if form.is_bound:
        kind, text = form.data.get("kind", ""), form.data.get("params", "")
    else:
        kind, text = form.initial.get("kind", ""), form.initial.get("params", "")
    try:
        params = json.loads(text) if isinstance(text, str) and len(text) <= 100_000 else text
    except json.JSONDecodeError:
        params = None
    return schedules.repeats_itself(kind, params)


def _form_page(request, form: ScheduleForm, schedule: Schedule | None):
    return render(
        request,
        "ml/schedules/form.html",
        {
            "form": form,
            "schedule": schedule,
            "kind_defaults": {kind: default_params(kind) for kind in kinds.available()},
            "kind_fields": {kind: kinds.describe(kind) for kind in kinds.available()},
            "repeats_itself": _repeats_itself(form),
            "rotate_seed": schedules.ROTATE_SEED,
        },
        status=400 if form.is_bound else 200,
    )


def _row(schedule: Schedule) -> dict:
    last = schedule.recent_runs[0] if schedule.recent_runs else None
    return {
        "schedule": schedule,
        "trigger": schedules.describe_trigger(schedule),
        "last_run": last,
        "last_run_url": reverse("ml:run-detail", args=[last.pk]) if last else None,
    }


@require_safe
@login_required
def schedule_list(request):
    _require_admin(request.user)
    return render(
        request, "ml/schedules/list.html", {"rows": [_row(schedule) for schedule in schedules.overview(recent_runs=1)]}
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def schedule_new(request):
    _require_admin(request.user)
    if request.method != "POST":
        kind = request.GET.get("kind") if request.GET.get("kind") in kinds.available() else kinds.available()[0]
        initial = {"kind": kind, "params": params_text(kind, default_params(kind))}
        return _form_page(request, ScheduleForm(initial=initial), None)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            schedule = schedules.create_schedule(request.user, **form.cleaned_data)
        except schedules.ScheduleError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Schedule {schedule.name} created.")
            return redirect("ml-schedules:list")
    return _form_page(request, form, None)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def schedule_edit(request, schedule_id: int):
    _require_admin(request.user)
    schedule = get_object_or_404(Schedule, pk=schedule_id)
    if request.method != "POST":
        initial = {name: getattr(schedule, name) for name in schedules.EDITABLE}
        initial["params"] = params_text(schedule.kind, schedule.params)
        return _form_page(request, ScheduleForm(initial=initial), schedule)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            schedules.update_schedule(request.user, schedule, **form.cleaned_data)
        except schedules.ScheduleError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Schedule {form.cleaned_data['name']} saved.")
            return redirect("ml-schedules:list")
    return _form_page(request, form, schedule)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def schedule_delete(request, schedule_id: int):
    """GET asks for confirmation; POST deletes."""
    _require_admin(request.user)
    schedule = get_object_or_404(Schedule, pk=schedule_id)
    if request.method == "POST":
        schedules.delete_schedule(request.user, schedule)
        messages.success(request, f"Schedule {schedule.name} deleted; the runs it made are kept.")
        return redirect("ml-schedules:list")
    return render(request, "ml/schedules/delete.html", {"schedule": schedule, "run_count": schedule.runs.count()})


@require_POST
@login_required
def schedule_enable(request, schedule_id: int, enabled: bool):
    _require_admin(request.user)
    schedule = schedules.set_enabled(request.user, get_object_or_404(Schedule, pk=schedule_id), enabled)
    messages.success(request, f"Schedule {schedule.name} {'resumed' if enabled else 'paused'}.")
    return redirect("ml-schedules:list")


@require_POST
@login_required
def schedule_fire(request, schedule_id: int):
    """Run now, whatever the trigger or pause says (refused while a run of it is queued or running)."""
    _require_admin(request.user)
    schedule = get_object_or_404(Schedule, pk=schedule_id)
    try:
        run = schedules.run_now(request.user, schedule, celery_task=execute_run)
    except (schedules.ScheduleBusy, RunParamsError) as exc:
        messages.error(request, f"Schedule {schedule.name} not started: {exc}")
    else:
        messages.success(request, f"Schedule {schedule.name} started run {run.pk}.")
    return redirect("ml-schedules:list")

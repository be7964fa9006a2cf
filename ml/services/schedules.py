"""Schedules: run templates fired by django-celery-beat, on a cron schedule or by a data trigger.

The one mutation layer for :class:`~ml.models.Schedule` (admins only, every change audited, each in
one transaction). Each schedule owns a beat ``PeriodicTask`` that calls ``ml.tasks.fire_schedule``
with the schedule's id on the ``default`` queue; create, update, pause/resume and delete keep it in
step in the same transaction (cron → ``CrontabSchedule``; data → ``IntervalSchedule`` of
``check_every_minutes``; ``enabled`` mirrored), so the beat's ``DatabaseScheduler`` picks the
change up on its next tick.

:func:`fire` (the beat task) starts the template's run as the schedule's creator, linked to the
schedule, unless a run of the schedule is still queued or running, the schedule is paused, or (data
trigger) fewer than ``min_new_pairs`` pairs were confirmed since the last successful run of the
kind (:func:`new_confirmed_pairs`), or since the schedule's own run failed if that came later.
:func:`run_now` starts one at once for an admin ("run now").

A generate run repeated with the same parameters makes the same images again (seeds are deterministic and
images are deduplicated): nothing new. ``"rotate_seed": true`` in a schedule's params (:data:`ROTATE_SEED`,
for kinds with a ``seed``) gives each firing its own seeds: the run's seed is the template's seed plus the
schedule's fire count (the runs it made before) times the seeds one run uses (``images_per_prompt``), so no
two firings share a seed (:func:`run_params`). :func:`repeats_itself` says when a template would make nothing
new, for the form's warning.

Both take the Celery task that executes the run (``celery_task``: ``ml.tasks.execute_run``) from their
caller and hand it to :func:`~ml.services.runs.start_run`: ``ml/tasks.py`` imports this module, so this
module never imports it.
"""

from __future__ import annotations

import json
import logging

from celery.schedules import crontab
from cron_descriptor import FormatException, MissingFieldException, Options, WrongArgumentException, get_description
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Max, Prefetch
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, crontab_schedule_celery_timezone

from annotation import roles
from annotation.models import Pair
from annotation.services import audit
from curation.models import Consensus
from ml.models import Run, Schedule
from ml.services.runs import RunParamsError, kinds, start_run, validate_params

logger = logging.getLogger(__name__)

TASK = "ml.tasks.fire_schedule"
QUEUE = "default"
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
MAX_CHECK_EVERY_MINUTES = 24 * 60
EDITABLE = ("name", "kind", "params", "trigger", "cron", "min_new_pairs", "check_every_minutes", "enabled")
ACTIVE = (Run.Status.QUEUED, Run.Status.RUNNING)
ROTATE_SEED = "rotate_seed"  # a schedule's own parameter: each firing gets fresh seeds (see the module docstring)


class ScheduleError(ValueError):
    """Invalid schedule fields: ``errors`` maps each field to its message; ``params`` maps to a
    dict of messages per run parameter (from :class:`RunParamsError`)."""

    def __init__(self, errors: dict):
        self.errors = errors
        flat = [f"{name}: {message}" for name, message in errors.items() if name != "params"]
        flat += [f"params.{name}: {message}" for name, message in errors.get("params", {}).items()]
        super().__init__("; ".join(flat))


class ScheduleBusy(ValueError):
    """A run of the schedule is still queued or running."""


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins manage schedules.")


def overview(recent_runs: int = 20):
    """Schedules by name with ``created_by``, ``run_count`` and ``recent_runs`` (the latest runs they
    made, latest first), in a fixed number of queries."""
    recent = Run.objects.order_by("-created_at", "-id")[:recent_runs]
    return (
        Schedule.objects.select_related("created_by")
        .annotate(run_count=Count("runs"))
        .prefetch_related(Prefetch("runs", queryset=recent, to_attr="recent_runs"))
        .order_by("name")
    )


# --- validation ---------------------------------------------------------------------------------


def parse_cron(text: str) -> dict[str, str]:
    """The five fields of a cron string (``minute hour day-of-month month day-of-week``), each
    checked by Celery's crontab parser, which is what the beat evaluates; ValueError names the field."""
    fields = str(text or "").split()
    if len(fields) != 5:
        raise ValueError("five fields are needed: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'")
    spec = dict(zip(CRON_FIELDS, fields, strict=True))
    for name, value in spec.items():
        try:
            crontab(**{name: value})
        except ValueError as exc:
            raise ValueError(f"bad {name.replace('_', ' ')} {value!r}: {exc}") from None
    return spec


def describe_trigger(schedule: Schedule) -> str:
    """The trigger in words: the cron string described by ``cron_descriptor``, or the data threshold."""
    if schedule.trigger == Schedule.Trigger.CRON:
        options = Options()
        options.use_24hour_time_format = True
        try:
            return f"{get_description(schedule.cron, options)} ({crontab_schedule_celery_timezone()})"
        except (FormatException, MissingFieldException, WrongArgumentException):
            return schedule.cron
    return (
        f"when at least {schedule.min_new_pairs} newly confirmed pairs exist "
        f"(checked every {schedule.check_every_minutes} min)"
    )


def _int(value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(
            f"must be at least {minimum}" if maximum is None else f"must be between {minimum} and {maximum}"
        )
    return value


def _clean(fields: dict, *, pk: int | None) -> dict:
    """The schedule's fields, checked and normalised (params cleaned by the kind's validator);
    every problem is reported at once in :class:`ScheduleError`."""
    errors: dict = {}
    cleaned = dict(fields)
    name = str(fields["name"] or "").strip()
    others = Schedule.objects.all() if pk is None else Schedule.objects.exclude(pk=pk)
    if not name:
        errors["name"] = "required"
    elif len(name) > 100:
        errors["name"] = "at most 100 characters"
    elif others.filter(name=name).exists():
        errors["name"] = f"a schedule named {name!r} exists"
    cleaned["name"] = name
    if not isinstance(fields["enabled"], bool):
        errors["enabled"] = "must be true or false"

    if fields["trigger"] == Schedule.Trigger.CRON:
        try:
            cleaned["cron"] = " ".join(parse_cron(fields["cron"]).values())
        except ValueError as exc:
            errors["cron"] = str(exc)
        cleaned["min_new_pairs"] = None
    elif fields["trigger"] == Schedule.Trigger.DATA:
        if fields["min_new_pairs"] is None:
            errors["min_new_pairs"] = "required for a data trigger"
        else:
            try:
                cleaned["min_new_pairs"] = _int(fields["min_new_pairs"], 1)
            except ValueError as exc:
                errors["min_new_pairs"] = str(exc)
        cleaned["cron"] = ""
    else:
        errors["trigger"] = f"must be one of {', '.join(Schedule.Trigger.values)}"
    try:
        cleaned["check_every_minutes"] = _int(fields["check_every_minutes"], 1, MAX_CHECK_EVERY_MINUTES)
    except ValueError as exc:
        errors["check_every_minutes"] = str(exc)

    params = dict(fields["params"]) if isinstance(fields["params"], dict) else fields["params"]
    rotate = params.pop(ROTATE_SEED, False) if isinstance(params, dict) else False
    try:
        cleaned["params"], _ = validate_params(fields["kind"], params)
    except RunParamsError as exc:
        if "kind" in exc.errors:
            errors["kind"] = exc.errors.pop("kind")
        if exc.errors:
            errors["params"] = exc.errors
    else:
        if not isinstance(rotate, bool):
            errors["params"] = {ROTATE_SEED: "must be true or false"}
        elif rotate and "seed" not in cleaned["params"]:
            errors["params"] = {ROTATE_SEED: f"{fields['kind']} runs have no seed to rotate"}
        elif rotate:
            cleaned["params"][ROTATE_SEED] = True
    if errors:
        raise ScheduleError(errors)
    return cleaned


# --- the beat entry -----------------------------------------------------------------------------


def _first_or_create(model, **spec):
    """A shared schedule row (django-celery-beat does not make them unique, so duplicates may exist)."""
    return model.objects.filter(**spec).first() or model.objects.create(**spec)


def _sync_periodic_task(schedule: Schedule) -> None:
    """Create or update the schedule's beat entry to match it (same transaction as the caller)."""
    task = schedule.periodic_task or PeriodicTask(task=TASK)
    task.name = f"ml schedule {schedule.pk}: {schedule.name}"
    task.task, task.args, task.kwargs, task.queue = TASK, json.dumps([schedule.pk]), "{}", QUEUE
    task.enabled = schedule.enabled
    task.description = f"{schedule.kind} run: {describe_trigger(schedule)}"
    if schedule.trigger == Schedule.Trigger.CRON:
        task.crontab = _first_or_create(
            CrontabSchedule, **parse_cron(schedule.cron), timezone=crontab_schedule_celery_timezone()
        )
        task.interval = None
    else:
        task.interval = _first_or_create(
            IntervalSchedule, every=schedule.check_every_minutes, period=IntervalSchedule.MINUTES
        )
        task.crontab = None
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])


def _snapshot(schedule: Schedule) -> dict:
    return {name: getattr(schedule, name) for name in EDITABLE}


# --- mutations ----------------------------------------------------------------------------------


def create_schedule(
    user,
    *,
    name: str,
    kind: str,
    params: dict,
    trigger: str,
    cron: str | None = None,
    min_new_pairs: int | None = None,
    check_every_minutes: int = 10,
    enabled: bool = True,
) -> Schedule:
    """A new schedule with its beat entry; ScheduleError (nothing written) for bad fields or params."""
    _require_admin(user)
    with transaction.atomic():
        fields = _clean(
            {
                "name": name,
                "kind": kind,
                "params": params,
                "trigger": trigger,
                "cron": cron,
                "min_new_pairs": min_new_pairs,
                "check_every_minutes": check_every_minutes,
                "enabled": enabled,
            },
            pk=None,
        )
        schedule = Schedule.objects.create(**fields, created_by=user)
        _sync_periodic_task(schedule)
        audit.record(user, "schedule.created", schedule, after=_snapshot(schedule))
    return schedule


def update_schedule(user, schedule: Schedule, **changes) -> Schedule:
    """Change any of :data:`EDITABLE`; the others keep their values (a new kind needs its params).

    Switching the trigger clears the other trigger's field (cron, or min_new_pairs).
    """
    _require_admin(user)
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ScheduleError(dict.fromkeys(unknown, "cannot be changed"))
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        before = _snapshot(schedule)
        fields = _clean({**before, **changes}, pk=schedule.pk)
        changed = [name for name in EDITABLE if fields[name] != before[name]]
        if not changed:
            return schedule
        for name in changed:
            setattr(schedule, name, fields[name])
        schedule.save(update_fields=[*changed, "updated_at"])
        _sync_periodic_task(schedule)
        audit.record(
            user,
            "schedule.updated",
            schedule,
            before={name: before[name] for name in changed},
            after={name: fields[name] for name in changed},
        )
    return schedule


def set_enabled(user, schedule: Schedule, enabled: bool) -> Schedule:
    """Pause (False) or resume (True) a schedule and its beat entry; a no-op when already so."""
    _require_admin(user)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if schedule.enabled == enabled:
            return schedule
        schedule.enabled = enabled
        schedule.save(update_fields=["enabled", "updated_at"])
        _sync_periodic_task(schedule)
        audit.record(
            user,
            "schedule.resumed" if enabled else "schedule.paused",
            schedule,
            before={"enabled": not enabled},
            after={"enabled": enabled},
        )
    return schedule


def delete_schedule(user, schedule: Schedule) -> None:
    """Delete the schedule and its beat entry; the runs it made stay (their link becomes empty)."""
    _require_admin(user)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        audit.record(user, "schedule.deleted", schedule, before=_snapshot(schedule))
        task = schedule.periodic_task
        schedule.delete()
        if task is not None:
            task.delete()


# --- firing -------------------------------------------------------------------------------------


def new_confirmed_pairs(kind: str, *, after=None) -> int:
    """Pairs confirmed since the latest successful run of ``kind`` (all confirmed pairs if none), or
    since ``after`` when that is later.

    *Confirmed* is ``Consensus.outcome == "confirmed"``: a k-judgement majority agreed that the
    expected image is the correct one. Adjudicated pairs are left out (a reviewer's decision,
    not the experts' agreement), as are gold and retired pairs. *When* is the consensus row's
    ``updated_at``: the row is written only when its outcome, label or counts change, so for a
    confirmed pair it is the moment it became confirmed, or later if further judgements changed
    its counts while it stayed confirmed. *Since* is the latest ``finished_at`` of a succeeded
    run of ``kind``; failed and cancelled runs, and runs of other kinds, do not reset the count.
    """
    since = Run.objects.filter(kind=kind, status=Run.Status.SUCCEEDED).aggregate(at=Max("finished_at"))["at"]
    if after is not None and (since is None or after > since):
        since = after
    confirmed = Consensus.objects.filter(outcome=Consensus.Outcome.CONFIRMED, pair__is_gold=False).exclude(
        pair__status=Pair.Status.RETIRED
    )
    if since is not None:
        confirmed = confirmed.filter(updated_at__gt=since)
    return confirmed.count()


def _active_run(schedule: Schedule) -> Run | None:
    return schedule.runs.filter(status__in=ACTIVE).order_by("-created_at", "-id").first()


def _last_failure(schedule: Schedule):
    """When the schedule's latest run failed (None if it did not). A data trigger counts new pairs
    from there, so a run that keeps failing is not restarted at every check: it waits for as many
    new confirmed pairs again, or for an admin's "run now"."""
    latest = schedule.runs.filter(status__in=Run.FINISHED).order_by("-finished_at", "-id").first()
    return latest.finished_at if latest is not None and latest.status == Run.Status.FAILED else None


def repeats_itself(kind: str, params) -> bool:
    """Whether every firing of this template would make the same generate run: the same tuples with the same
    seeds, so the same images, all deduplicated: nothing new after the first (unless :data:`ROTATE_SEED`)."""
    return kind == Run.Kind.GENERATE and not (isinstance(params, dict) and params.get(ROTATE_SEED) is True)


def _seed_limit(kind: str) -> int:
    field = next((f for f in kinds.describe(kind) if f["name"] == "seed"), {})
    return int(field.get("maximum") or 2**31 - 1)


def run_params(schedule: Schedule, fires: int) -> dict:
    """The parameters of the schedule's run after ``fires`` earlier firings: its template, and with
    :data:`ROTATE_SEED` the seed moved on by ``fires`` × the seeds a run uses (``images_per_prompt``, else 1),
    wrapping at the kind's largest seed."""
    params = {name: value for name, value in schedule.params.items() if name != ROTATE_SEED}
    seed, per_run = params.get("seed"), params.get("images_per_prompt")
    if schedule.params.get(ROTATE_SEED) is True and isinstance(seed, int):
        stride = max(1, per_run) if isinstance(per_run, int) else 1
        params["seed"] = (seed + fires * stride) % (_seed_limit(schedule.kind) + 1)
    return params


def _start(schedule: Schedule, user, *, actor, manual: bool, celery_task) -> Run:
    params = run_params(schedule, schedule.runs.count())
    run = start_run(user, schedule.kind, params, celery_task=celery_task, schedule=schedule)
    after: dict = {"run": run.pk, "manual": manual}
    if schedule.params.get(ROTATE_SEED) is True:
        after["seed"] = params.get("seed")
    audit.record(actor, "schedule.fired", schedule, after=after)
    return run


def fire(schedule_id: int, *, celery_task) -> Run | None:
    """The beat's firing (``ml.tasks.fire_schedule``): the run started, or None when skipped (logged).
    ``celery_task`` executes the run (``ml.tasks.execute_run``).

    Skipped when the schedule is gone or paused (a firing already in flight), while a run of it is
    still queued or running, and, for a data trigger, below ``min_new_pairs`` new confirmed pairs.
    The schedule's row is locked, so a concurrent firing or "run now" cannot start a second run.
    ``start_run`` checks again that the creator is an admin and that the params still hold (a
    referenced model may be gone): its PermissionDenied or RunParamsError fails the task, in the
    worker's log.
    """
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().select_related("created_by").filter(pk=schedule_id).first()
        if schedule is None:
            logger.info("schedule %s: gone, nothing fired", schedule_id)
            return None
        Schedule.objects.filter(pk=schedule.pk).update(last_checked_at=timezone.now())
        if not schedule.enabled:
            logger.info("schedule %s: paused, nothing fired", schedule.name)
            return None
        if (active := _active_run(schedule)) is not None:
            logger.info("schedule %s: skipped, its run %s is still %s", schedule.name, active.pk, active.status)
            return None
        if schedule.trigger == Schedule.Trigger.DATA:
            found = new_confirmed_pairs(schedule.kind, after=_last_failure(schedule))
            assert schedule.min_new_pairs is not None  # a data trigger has its threshold
            if found < schedule.min_new_pairs:
                logger.info(
                    "schedule %s: %s of %s new confirmed pairs, not yet", schedule.name, found, schedule.min_new_pairs
                )
                return None
        run = _start(schedule, schedule.created_by, actor=None, manual=False, celery_task=celery_task)
    logger.info("schedule %s: started %s run %s", schedule.name, run.kind, run.pk)
    return run


def run_now(user, schedule: Schedule, *, celery_task) -> Run:
    """Start the schedule's run at once for an admin, whatever the trigger or pause says; ``celery_task``
    executes it (``ml.tasks.execute_run``).

    ScheduleBusy while a run of the schedule is still queued or running.
    """
    _require_admin(user)
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if (active := _active_run(schedule)) is not None:
            raise ScheduleBusy(f"Run {active.pk} of this schedule is still {active.status}.")
        return _start(schedule, user, actor=user, manual=True, celery_task=celery_task)

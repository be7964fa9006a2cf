"""Schedules (ml.services.schedules): the beat entry kept in step, validation, permissions, firing."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from annotation.models import AuditEvent
from ml.models import Run, Schedule
from ml.services import schedules
from ml.tasks import execute_run, fire_schedule
from tests.support.schedules import beat_entry, crontab_of, generator, make_schedule, no_broker, template  # noqa: F401 (fixtures; no_broker is autouse)

pytestmark = pytest.mark.django_db


# --- create ---------------------------------------------------------------------------------------


def test_a_cron_schedule_gets_a_beat_entry_with_its_crontab(admin_user, generator):
    schedule = make_schedule(admin_user, generator, params=template(generator, steps=2))
    assert schedule.params["steps"] == 2 and schedule.params["images_per_prompt"] == 1  # cleaned, defaults in
    task = beat_entry(schedule)
    assert task.task == "ml.tasks.fire_schedule" and json.loads(task.args) == [schedule.pk]
    assert task.queue == "default" and task.enabled
    assert crontab_of(task) == "0 3 * * 1-5" and str(task.crontab.timezone) == "UTC"
    assert task.interval is None
    event = AuditEvent.objects.get(action="schedule.created")
    assert event.target_id == str(schedule.pk) and event.after["cron"] == "0 3 * * 1-5"
    assert schedules.describe_trigger(schedule) == "At 03:00, Monday through Friday (UTC)"


def test_a_data_trigger_is_checked_on_an_interval(admin_user, generator):
    schedule = make_schedule(
        admin_user, generator, trigger="data", cron="ignored", min_new_pairs=50, check_every_minutes=15
    )
    assert schedule.cron == "" and schedule.min_new_pairs == 50
    task = beat_entry(schedule)
    assert task.crontab is None
    assert (task.interval.every, task.interval.period) == (15, IntervalSchedule.MINUTES)
    assert "at least 50 newly confirmed pairs" in schedules.describe_trigger(schedule)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "bad minute '61'"),
        ("0 25 * * *", "bad hour '25'"),
        ("0 3 * * funday", "bad day of week"),
        ("*/0 * * * *", "bad minute"),
        ("* * *", "five fields"),
        ("0 3 * * * *", "five fields"),
        ("", "five fields"),
    ],
)
def test_a_bad_cron_is_refused_and_nothing_is_written(admin_user, generator, cron, message):
    crontabs = CrontabSchedule.objects.count()
    with pytest.raises(schedules.ScheduleError) as caught:
        make_schedule(admin_user, generator, cron=cron)
    assert message in caught.value.errors["cron"]
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task=schedules.TASK).exists()
    assert CrontabSchedule.objects.count() == crontabs
    assert not AuditEvent.objects.filter(action__startswith="schedule.").exists()


def test_bad_fields_and_params_are_all_reported(admin_user, generator):
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.create_schedule(
            admin_user,
            name=" ",
            kind="generate",
            params=template(generator, steps=0, colour="red"),
            trigger="data",
            check_every_minutes=0,
        )
    errors = caught.value.errors
    assert errors["name"] == "required"
    assert errors["min_new_pairs"] == "required for a data trigger"
    assert "between 1 and 1440" in errors["check_every_minutes"]
    assert "between" in errors["params"]["steps"]
    assert "unknown parameters: colour" in errors["params"]["params"]
    assert "params.steps" in str(caught.value)
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.create_schedule(admin_user, name="x", kind="paint", params={}, trigger="hourly")
    assert "must be one of" in caught.value.errors["kind"] and "must be one of" in caught.value.errors["trigger"]
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task=schedules.TASK).exists()


def test_names_are_unique(admin_user, generator):
    make_schedule(admin_user, generator)
    with pytest.raises(schedules.ScheduleError, match="a schedule named 'nightly' exists"):
        make_schedule(admin_user, generator, name=" nightly ")


# --- update, pause, delete ------------------------------------------------------------------------


def test_pause_and_resume_mirror_the_beat_entry(admin_user, generator):
    schedule = make_schedule(admin_user, generator)
    schedules.set_enabled(admin_user, schedule, False)
    assert not Schedule.objects.get(pk=schedule.pk).enabled and not beat_entry(schedule).enabled
    schedules.set_enabled(admin_user, schedule, False)  # already paused: nothing happens
    schedules.set_enabled(admin_user, schedule, True)
    assert Schedule.objects.get(pk=schedule.pk).enabled and beat_entry(schedule).enabled
    actions = list(
        AuditEvent.objects.filter(action__in=["schedule.paused", "schedule.resumed"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["schedule.paused", "schedule.resumed"]


def test_edits_keep_the_beat_entry_in_step(admin_user, generator):
    schedule = make_schedule(admin_user, generator)
    task_id = schedule.periodic_task_id
    schedule = schedules.update_schedule(
        admin_user, schedule, cron="30 */6 * * *", name="six-hourly", params=template(generator, steps=7)
    )
    task = beat_entry(schedule)
    assert task.pk == task_id and crontab_of(task) == "30 */6 * * *" and "six-hourly" in task.name
    assert schedule.params["steps"] == 7
    event = AuditEvent.objects.get(action="schedule.updated")
    assert set(event.after) == {"name", "cron", "params"} and event.before["cron"] == "0 3 * * 1-5"

    schedule = schedules.update_schedule(admin_user, schedule, trigger="data", min_new_pairs=10, check_every_minutes=5)
    task = beat_entry(schedule)
    assert schedule.cron == "" and task.crontab is None and task.interval.every == 5
    schedule = schedules.update_schedule(admin_user, schedule, check_every_minutes=30)
    assert beat_entry(schedule).interval.every == 30
    schedule = schedules.update_schedule(admin_user, schedule, trigger="cron", cron="0 0 1 * *")
    task = beat_entry(schedule)
    assert schedule.min_new_pairs is None and task.interval is None and crontab_of(task) == "0 0 1 * *"
    assert PeriodicTask.objects.filter(task=schedules.TASK).count() == 1


def test_a_refused_edit_changes_nothing(admin_user, generator):
    schedule = make_schedule(admin_user, generator)
    for changes, field in [
        ({"cron": "0 3 * *"}, "cron"),
        ({"kind": "paint"}, "kind"),
        ({"params": {"steps": 2}}, "params"),
        ({"trigger": "data"}, "min_new_pairs"),
        ({"created_by": None}, "created_by"),
    ]:
        with pytest.raises(schedules.ScheduleError) as caught:
            schedules.update_schedule(admin_user, schedule, **changes)
        assert field in caught.value.errors
    assert Schedule.objects.get(pk=schedule.pk).cron == "0 3 * * 1-5"
    assert crontab_of(beat_entry(schedule)) == "0 3 * * 1-5"
    assert not AuditEvent.objects.filter(action="schedule.updated").exists()


def test_delete_removes_the_beat_entry_and_keeps_the_runs(admin_user, generator):
    schedule = make_schedule(admin_user, generator)
    run = schedules.run_now(admin_user, schedule, celery_task=execute_run)
    schedules.delete_schedule(admin_user, schedule)
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task=schedules.TASK).exists()
    assert Run.objects.get(pk=run.pk).schedule is None
    assert AuditEvent.objects.get(action="schedule.deleted").before["name"] == "nightly"


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_admins_manage_schedules(admin_user, generator, annotator, reviewer, role):
    user = annotator if role == "annotator" else reviewer
    schedule = make_schedule(admin_user, generator)
    for attempt in [
        lambda: make_schedule(user, generator, name="mine"),
        lambda: schedules.update_schedule(user, schedule, cron="0 4 * * *"),
        lambda: schedules.set_enabled(user, schedule, False),
        lambda: schedules.delete_schedule(user, schedule),
        lambda: schedules.run_now(user, schedule, celery_task=execute_run),
    ]:
        with pytest.raises(PermissionDenied):
            attempt()
    assert Schedule.objects.count() == 1 and not Run.objects.exists()


# --- firing ---------------------------------------------------------------------------------------


def test_a_cron_firing_starts_a_run_linked_to_the_schedule(
    admin_user, generator, no_broker, django_capture_on_commit_callbacks
):
    schedule = make_schedule(admin_user, generator)
    with django_capture_on_commit_callbacks(execute=True):
        run_id = fire_schedule.apply(args=[schedule.pk]).get()
    run = Run.objects.get(pk=run_id)
    assert run.schedule == schedule and run.created_by == admin_user
    assert run.kind == "generate" and run.params == schedule.params and run.status == Run.Status.QUEUED
    no_broker.assert_called_once_with(args=[run.pk], task_id=run.celery_task_id, queue="gpu")
    assert Schedule.objects.get(pk=schedule.pk).last_checked_at is not None
    fired = AuditEvent.objects.get(action="schedule.fired")
    assert fired.actor is None and fired.after == {"run": run.pk, "manual": False}


def test_a_firing_is_skipped_while_the_previous_run_is_active(admin_user, generator):
    schedule = make_schedule(admin_user, generator)
    first = schedules.fire(schedule.pk, celery_task=execute_run)
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    Run.objects.filter(pk=first.pk).update(status=Run.Status.RUNNING)
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    with pytest.raises(schedules.ScheduleBusy, match=f"Run {first.pk} of this schedule is still running"):
        schedules.run_now(admin_user, schedule, celery_task=execute_run)
    Run.objects.filter(pk=first.pk).update(status=Run.Status.FAILED)
    second = schedules.fire(schedule.pk, celery_task=execute_run)
    assert second is not None and second.pk != first.pk
    assert list(schedule.runs.order_by("id")) == [first, second]


def test_paused_or_deleted_schedules_do_not_fire_but_run_now_does(admin_user, generator):
    schedule = make_schedule(admin_user, generator, enabled=False)
    assert not beat_entry(schedule).enabled
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    assert Schedule.objects.get(pk=schedule.pk).last_checked_at is not None
    run = schedules.run_now(admin_user, schedule, celery_task=execute_run)
    assert run.schedule == schedule
    fired = AuditEvent.objects.get(action="schedule.fired")
    assert fired.actor == admin_user and fired.after == {"run": run.pk, "manual": True}
    assert schedules.fire(999_999, celery_task=execute_run) is None


# --- the rotating seed ----------------------------------------------------------------------------


def _fire_twice(schedule) -> list[Run]:
    first = schedules.fire(schedule.pk, celery_task=execute_run)
    Run.objects.filter(pk=first.pk).update(status=Run.Status.SUCCEEDED)
    second = schedules.fire(schedule.pk, celery_task=execute_run)
    return [first, second]


def test_two_firings_with_a_rotating_seed_get_different_seeds(admin_user, generator):
    params = template(generator, seed=40, images_per_prompt=3, rotate_seed=True)
    schedule = make_schedule(admin_user, generator, params=params)
    assert schedule.params["rotate_seed"] is True and not schedules.repeats_itself("generate", schedule.params)
    first, second = _fire_twice(schedule)
    # fire count × images_per_prompt: the seeds 40..42 then 43..45, no two firings share one
    assert (first.params["seed"], second.params["seed"]) == (40, 43)
    assert "rotate_seed" not in first.params  # the schedule's option, not the run's
    fired = AuditEvent.objects.filter(action="schedule.fired").order_by("id")
    assert [event.after["seed"] for event in fired] == [40, 43]


def test_two_firings_with_a_fixed_seed_repeat_the_same_run(admin_user, generator):
    schedule = make_schedule(admin_user, generator, params=template(generator, seed=40))
    assert schedules.repeats_itself("generate", schedule.params)
    first, second = _fire_twice(schedule)
    assert first.params == second.params and first.params["seed"] == 40


def test_the_rotating_seed_wraps_and_is_checked(admin_user, generator):
    schedule = make_schedule(admin_user, generator, params=template(generator, seed=2**62, rotate_seed=True))
    assert schedules.run_params(schedule, 0)["seed"] == 2**62
    assert schedules.run_params(schedule, 1)["seed"] == 0  # past the largest seed: from 0 again
    with pytest.raises(schedules.ScheduleError) as refused:
        make_schedule(admin_user, generator, name="odd", params=template(generator, rotate_seed="yes"))
    assert refused.value.errors == {"params": {"rotate_seed": "must be true or false"}}
    assert not Schedule.objects.filter(name="odd").exists()

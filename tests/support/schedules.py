"""Schedules of generator runs: a registered tiny generator, no broker (runs are only queued in the
database; ``no_broker`` is autouse wherever it is imported), a run template, and the beat entry of a schedule."""

from __future__ import annotations

from unittest import mock

import pytest
from django_celery_beat.models import PeriodicTask

from ml.models import Schedule
from ml.services import registry, schedules


@pytest.fixture
def generator(admin_user):
    return registry.register_model(admin_user, "generator_base", "tiny-flux", "/models/tiny-flux")


@pytest.fixture(autouse=True)
def no_broker():
    """Runs are queued in the database only; nothing is sent to a broker."""
    with mock.patch("ml.tasks.execute_run.apply_async") as apply_async:
        yield apply_async


def template(generator, **extra) -> dict:
    return {"model": generator.pk, "tuples": {"task": "RU", "limit": 5}, **extra}


def make_schedule(user, generator, name="nightly", **fields) -> Schedule:
    fields = {"kind": "generate", "params": template(generator), "trigger": "cron", "cron": "0 3 * * 1-5", **fields}
    return schedules.create_schedule(user, name=name, **fields)


def beat_entry(schedule: Schedule) -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab", "interval").get(pk=schedule.periodic_task_id)


def crontab_of(task: PeriodicTask) -> str:
    c = task.crontab
    return " ".join([c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week])

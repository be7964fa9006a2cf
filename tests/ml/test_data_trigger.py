"""The data trigger: pairs confirmed since the last successful run of a kind, and firing at the threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Pair
from curation.models import Consensus
from ml.models import Run, Schedule
from ml.services import schedules
from ml.tasks import execute_run
from tests.support.factories import make_pair
from tests.support.judging import judged
from tests.support.schedules import generator, make_schedule, no_broker  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

Outcome = Consensus.Outcome


def consensus(outcome: str, *, at=None, **pair_fields) -> Consensus:
    """A pair whose consensus row has ``outcome``, last written at ``at`` (default now)."""
    pair = make_pair("RU")
    if pair_fields:
        Pair.objects.filter(pk=pair.pk).update(**pair_fields)
    row = Consensus.objects.create(pair=pair, outcome=outcome, label="expected" if outcome == "confirmed" else "")
    if at is not None:
        Consensus.objects.filter(pk=row.pk).update(updated_at=at)
    return row


def finished(user, kind: str, status: str, at) -> Run:
    return Run.objects.create(kind=kind, status=status, finished_at=at, created_by=user)


def test_without_a_successful_run_every_confirmed_pair_counts(admin_user):
    for outcome in (
        Outcome.CONFIRMED,
        Outcome.CONFIRMED,
        Outcome.REVERSED,
        Outcome.REJECTED,
        Outcome.DISPUTED,
        Outcome.PENDING,
        Outcome.ADJUDICATED,
    ):
        consensus(outcome)
    consensus(Outcome.CONFIRMED, is_gold=True)
    consensus(Outcome.CONFIRMED, status=Pair.Status.RETIRED)
    assert schedules.new_confirmed_pairs("generate") == 2


def test_a_pair_confirmed_by_real_judgements_counts(admin_user):
    judged("expected", "expected", "other")  # 2 of 3: confirmed
    judged("other", "other", "expected")  # reversed
    judged("expected", "expected")  # pending
    assert schedules.new_confirmed_pairs("generate") == 1


def test_only_pairs_confirmed_after_the_latest_successful_run_of_the_kind_count(admin_user):
    now = timezone.now()
    consensus(Outcome.CONFIRMED, at=now - timedelta(hours=5))
    consensus(Outcome.CONFIRMED, at=now - timedelta(hours=3))
    consensus(Outcome.CONFIRMED, at=now - timedelta(hours=1))
    consensus(Outcome.REVERSED, at=now - timedelta(minutes=30))
    finished(admin_user, "generate", Run.Status.SUCCEEDED, now - timedelta(hours=6))
    finished(admin_user, "generate", Run.Status.SUCCEEDED, now - timedelta(hours=4))
    assert schedules.new_confirmed_pairs("generate") == 2
    # Failed and cancelled runs of the kind, and successful runs of other kinds, do not reset the count.
    finished(admin_user, "generate", Run.Status.FAILED, now - timedelta(hours=2))
    finished(admin_user, "generate", Run.Status.CANCELLED, now - timedelta(minutes=50))
    finished(admin_user, "train_scorer", Run.Status.SUCCEEDED, now - timedelta(minutes=10))
    Run.objects.create(kind="generate", status=Run.Status.RUNNING, created_by=admin_user)
    assert schedules.new_confirmed_pairs("generate") == 2
    assert schedules.new_confirmed_pairs("train_scorer") == 0
    assert schedules.new_confirmed_pairs("sft") == 3
    finished(admin_user, "generate", Run.Status.SUCCEEDED, now - timedelta(hours=2))
    assert schedules.new_confirmed_pairs("generate") == 1


def test_a_data_trigger_fires_at_the_threshold_and_not_below(admin_user, generator):  # noqa: F811
    schedule = make_schedule(admin_user, generator, trigger="data", min_new_pairs=2)
    consensus(Outcome.CONFIRMED)
    consensus(Outcome.REVERSED)
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    checked = Schedule.objects.get(pk=schedule.pk).last_checked_at
    assert checked is not None and not Run.objects.exists()

    consensus(Outcome.CONFIRMED)
    run = schedules.fire(schedule.pk, celery_task=execute_run)
    assert run is not None and run.schedule == schedule and run.kind == "generate"
    assert Schedule.objects.get(pk=schedule.pk).last_checked_at > checked
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None  # its run is still queued

    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED, finished_at=timezone.now())
    assert schedules.new_confirmed_pairs("generate") == 0
    # the count starts again after the successful run
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    consensus(Outcome.CONFIRMED)
    consensus(Outcome.CONFIRMED)
    assert schedules.fire(schedule.pk, celery_task=execute_run) is not None


def test_after_its_run_failed_a_data_trigger_waits_for_as_many_new_pairs_again(admin_user, generator):  # noqa: F811
    schedule = make_schedule(admin_user, generator, trigger="data", min_new_pairs=2)
    consensus(Outcome.CONFIRMED, at=timezone.now() - timedelta(hours=2))
    consensus(Outcome.CONFIRMED, at=timezone.now() - timedelta(hours=2))
    run = schedules.fire(schedule.pk, celery_task=execute_run)
    assert run is not None
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED, finished_at=timezone.now() - timedelta(hours=1))
    # the same two pairs do not restart a failing run
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None

    consensus(Outcome.CONFIRMED)
    assert schedules.fire(schedule.pk, celery_task=execute_run) is None
    consensus(Outcome.CONFIRMED)
    again = schedules.fire(schedule.pk, celery_task=execute_run)
    assert again is not None and again.pk != run.pk

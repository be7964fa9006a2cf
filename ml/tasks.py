"""Celery tasks of the ML app: thin wrappers over :mod:`ml.services.runs` and :mod:`ml.services.schedules`.

``execute_run`` is routed to the ``gpu`` queue; it acknowledges late and is rejected (requeued)
when its process dies, so a killed run is redelivered and resumes from its checkpoint. A
redelivery that finds the run still alive elsewhere (fresh heartbeat) retries later. A database error
inside the run is retried with back-off (``DATABASE_RETRIES`` times, each try resuming the run); after
that the run is left running with a stale heartbeat, and ``sweep_stuck_runs`` (beat, every minute)
re-enqueues or fails it.

Tasks sit above the services: this module imports them, never the reverse. A service that queues a run
receives ``execute_run`` from its caller (``runs.start_run(..., celery_task=execute_run)``), so there is
no import circle.
"""

from celery import shared_task
from django.conf import settings

from config.celery import DATABASE_RETRIES, database_errors, database_retry_countdown
from ml.services import runs, schedules
from ml.services.runs import lifecycle


@shared_task(
    bind=True,
    name="ml.tasks.execute_run",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.ML_RUN_TIME_LIMIT,
    soft_time_limit=settings.ML_RUN_SOFT_TIME_LIMIT,
)
def execute_run(self, run_id: int) -> str:
    """Run one :class:`ml.models.Run` to the end; a redelivered finished run is left alone."""
    try:
        return runs.execute_run(run_id, worker=self.request.hostname, task_id=self.request.id).status
    except runs.RunBusy:
        raise self.retry(countdown=settings.ML_STALE_AFTER_SECONDS, max_retries=None) from None
    except database_errors() as exc:
        raise self.retry(
            exc=exc, countdown=database_retry_countdown(self.request.retries), max_retries=DATABASE_RETRIES
        ) from exc


@shared_task(name="ml.tasks.sweep_stuck_runs")
def sweep_stuck_runs() -> dict:
    """The beat's sweep of stuck runs (see :func:`ml.services.runs.lifecycle.sweep`)."""
    return lifecycle.sweep(celery_task=execute_run)


@shared_task(name="ml.tasks.fire_schedule")
def fire_schedule(schedule_id: int) -> int | None:
    """The beat's firing of a schedule (default queue): the id of the run it started, or None."""
    run = schedules.fire(schedule_id, celery_task=execute_run)
    return run.pk if run else None

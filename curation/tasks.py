"""Celery tasks of the curation app: thin wrappers over the services.

Tasks sit above the services: this module imports them, never the reverse. A service that queues one of
these tasks receives it from its caller (``jobs.start(..., celery_task=run_job)``,
``figures.figures(..., celery_task=refresh_figures)``), so there is no import circle.
"""

from celery import shared_task
from django.conf import settings

from config.celery import DATABASE_RETRIES, database_errors, database_retry_countdown
from curation.services import figures, jobs


@shared_task(bind=True, name="curation.tasks.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> str:
    """Run an import or export job (see curation/services/jobs.py).

    A job running elsewhere (fresh heartbeat) is tried again later; a database error inside the job is
    retried with back-off (``DATABASE_RETRIES`` times, :func:`config.celery.database_retry_countdown`),
    and after that the job is left running with a stale heartbeat for the stuck-work sweep.
    """
    try:
        return jobs.run(job_id).status
    except jobs.JobBusy:
        raise self.retry(countdown=settings.ML_STALE_AFTER_SECONDS, max_retries=None) from None
    except database_errors() as exc:
        raise self.retry(
            exc=exc, countdown=database_retry_countdown(self.request.retries), max_retries=DATABASE_RETRIES
        ) from exc


@shared_task(name="curation.tasks.sweep_stuck_jobs")
def sweep_stuck_jobs() -> dict:
    """The beat's sweep of stuck jobs (see :func:`curation.services.jobs.sweep`)."""
    return jobs.sweep(celery_task=run_job)


@shared_task(name="curation.tasks.refresh_figures", ignore_result=True)
def refresh_figures(name: str, params: dict) -> None:
    """Recompute one cached set of dashboard or agreement figures (see curation/services/figures.py)."""
    figures.compute(name, params)

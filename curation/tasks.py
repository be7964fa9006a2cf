"""Celery tasks of the curation app: thin wrappers over the services.

Tasks sit above the services: this module imports them, never the reverse. A service that queues one of
these tasks receives it from its caller (``jobs.start(..., celery_task=run_job)``,
``figures.figures(..., celery_task=refresh_figures)``), so there is no import circle.
"""

from celery import shared_task

from curation.services import figures, jobs


@shared_task(name="curation.tasks.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: int) -> str:
    """Run an import or export job (see curation/services/jobs.py)."""
    return jobs.run(job_id).status


@shared_task(name="curation.tasks.refresh_figures", ignore_result=True)
def refresh_figures(name: str, params: dict) -> None:
    """Recompute one cached set of dashboard or agreement figures (see curation/services/figures.py)."""
    figures.compute(name, params)

"""Background jobs (imports and exports) run by Celery: one row per job, deduplicated while in flight.

``start(kind, params, user, celery_task=run_job)`` returns ``(job, created)``: an identical request
(same kind and params) while one is queued or running gets that job back instead of a second one. The
Celery task ``curation.tasks.run_job`` calls :func:`run`, which calls the kind's handler in
:data:`HANDLERS`; a handler receives the job and a ``progress(fraction, message)`` callback and returns
the result dict. Failures are stored with their traceback, never half-reported.

Imports: ``curation/tasks.py`` imports this module, so this module never imports it (not even inside a
function): :func:`start` takes the Celery task that will run the job from its caller (the views pass
``curation.tasks.run_job``) and keeps here the rule for a broker that refuses the message (the job fails
visibly). The same holds for every service that queues work (curation/services/figures.py, ml's runs).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.services import audit
from config.celery import publish
from curation.models import Job
from curation.services.exporting import run_export_job
from curation.services.importing import run_import_job

Handler = Callable[[Job, Callable[[float, str], None]], dict]
HANDLERS: dict[str, Handler] = {  # kind -> the function that does the work
    Job.Kind.EXPORT: run_export_job,
    Job.Kind.IMPORT: run_import_job,
}


def dedup_key(kind: str, params: dict) -> str:
    return hashlib.sha256(json.dumps([kind, params], sort_keys=True, default=str).encode()).hexdigest()


def start(kind: str, params: dict, user, *, celery_task) -> tuple[Job, bool]:
    """Create a job and enqueue ``celery_task.delay(job.pk)`` (``curation.tasks.run_job``) when the
    transaction commits, or return the identical job already in flight.

    If the broker cannot be reached the job is marked failed (so an identical request later starts a
    fresh one) and :class:`config.celery.BrokerUnavailable` is raised (a 503 for web requests).
    """
    key = dedup_key(kind, params)
    existing = Job.objects.filter(dedup_key=key, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            job = Job.objects.create(kind=kind, params=params, dedup_key=key, created_by=user)
            audit.record(user, f"job.{kind}.started", job, after={"params": params})
    except IntegrityError:  # a concurrent identical request won the race
        return Job.objects.get(dedup_key=key, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]), False
    transaction.on_commit(
        lambda: publish(lambda: celery_task.delay(job.pk), on_failure=lambda exc: _not_queued(job, exc))
    )
    return job, True


def _not_queued(job: Job, exc: Exception) -> None:
    """The broker refused the job's message: fail the job visibly, which also frees its request for a retry."""
    Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.FAILED,
        finished_at=timezone.now(),
        error=f"Not queued: the task queue (broker) was unavailable: {type(exc).__name__}: {exc}"[:20000],
    )


def run(job_id: int) -> Job:
    """Run a job to the end (called by the Celery task); a redelivered finished job is left alone."""
    job = Job.objects.get(pk=job_id)
    if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
        return job
    # RUNNING here = redelivered: the worker that ran it died. Handlers start over (an export is built
    # in a fresh temporary folder; an import's batches are idempotent), so say so and reset the progress.
    restarted = job.status == Job.Status.RUNNING
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING,
        started_at=timezone.now(),
        **({"progress": 0.0, "message": "restarted: its worker was lost"} if restarted else {}),
    )

    def progress(fraction: float, message: str = "") -> None:
        Job.objects.filter(pk=job.pk).update(progress=max(0.0, min(1.0, fraction)), message=message[:500])

    try:
        result = HANDLERS[job.kind](job, progress)
    except Exception as exc:  # stored for the UI; the task itself succeeds so Celery does not retry blindly
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.FAILED, finished_at=timezone.now(), error=f"{exc}\n\n{traceback.format_exc()}"[:20000]
        )
    else:
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.SUCCEEDED, finished_at=timezone.now(), progress=1.0, result=result
        )
    job.refresh_from_db()
    return job

"""Background jobs (imports and exports) run by Celery: one row per job, deduplicated while in flight.

``start(kind, params, user, celery_task=run_job)`` returns ``(job, created)``: an identical request
(same kind and params) while one is queued or running gets that job back instead of a second one. The
Celery task ``curation.tasks.run_job`` calls :func:`run`, which calls the kind's handler in
:data:`HANDLERS`; a handler receives the job and a ``progress(fraction, message)`` callback and returns
the result dict. Failures are stored with their traceback, never half-reported.

Nothing is left stuck (issue 15):

* ``enqueued_at`` is set once the job's message was published (:func:`config.celery.publish`); a refused
  publish fails the job ("Not queued: ...") and answers 503. Deduplication attaches only to a job that can
  finish (:func:`can_finish`): queued with a message (or created within ``ENQUEUE_GRACE_SECONDS``, its
  publish still under way), or running with a fresh heartbeat (or a message published since its last
  beat). Any other in-flight job of the same request is failed on the spot and a new one started.
* A running job writes ``heartbeat_at`` every ``ML_HEARTBEAT_SECONDS``. A delivery that finds the job
  running with a fresh heartbeat raises :class:`JobBusy` (the task retries later: never two at once); one
  that finds it stale restarts it (its worker died).
* A database error inside the job (``OperationalError``/``InterfaceError``) is not recorded as the job's
  failure (it could not be written anyway): it propagates and ``curation.tasks.run_job`` retries with
  back-off (:func:`config.celery.database_retry_countdown`); the job stays ``running`` meanwhile.
* :func:`sweep` (the beat task ``curation.tasks.sweep_stuck_jobs``, every minute) fails jobs queued with no
  message behind them, and re-enqueues jobs running with a heartbeat older than ``ML_STALE_AFTER_SECONDS``
  and no message published since (``MAX_RECOVERIES`` times; after that, or if the broker refuses, it fails
  them with the reason).

Imports: ``curation/tasks.py`` imports this module, so this module never imports it (not even inside a
function): :func:`start` takes the Celery task that will run the job from its caller (the views pass
``curation.tasks.run_job``) and keeps here the rule for a broker that refuses the message (the job fails
visibly). The same holds for every service that queues work (curation/services/figures.py, ml's runs).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotation.services import audit
from config.celery import ENQUEUE_GRACE_SECONDS, BrokerUnavailable, database_errors, heartbeat, publish
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


#: How often :func:`sweep` re-enqueues a job whose worker was lost before it fails it instead.
MAX_RECOVERIES = 3

logger = logging.getLogger(__name__)


class JobBusy(Exception):
    """A delivered job is still running on another worker (its heartbeat is fresh): try later."""


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.ML_STALE_AFTER_SECONDS)


def can_finish(job: Job, now: datetime | None = None) -> bool:
    """Whether an in-flight job has a worker or a message behind it (what deduplication may attach to)."""
    now = now or timezone.now()
    if job.status == Job.Status.QUEUED:
        return job.enqueued_at is not None or job.created_at > now - timedelta(seconds=ENQUEUE_GRACE_SECONDS)
    if job.status == Job.Status.RUNNING:
        if job.heartbeat_at is None:
            return False
        return job.heartbeat_at > _stale_before(now) or (
            job.enqueued_at is not None and job.enqueued_at > job.heartbeat_at
        )
    return False


def start(kind: str, params: dict, user, *, celery_task) -> tuple[Job, bool]:
    """Create a job and enqueue ``celery_task.delay(job.pk)`` (``curation.tasks.run_job``) when the
    transaction commits, or return the identical job in flight if it can finish (:func:`can_finish`);
    one that cannot (no message, or its worker gone) is failed here and a new job started.

    If the broker cannot be reached the job is marked failed (so an identical request later starts a
    fresh one) and :class:`config.celery.BrokerUnavailable` is raised (a 503 for web requests).
    """
    key = dedup_key(kind, params)
    in_flight = [Job.Status.QUEUED, Job.Status.RUNNING]
    for _ in range(3):
        existing = Job.objects.filter(dedup_key=key, status__in=in_flight).first()
        if existing is not None:
            if can_finish(existing):
                return existing, False
            _fail_stuck(existing, "superseded by an identical request: " + _why_stuck(existing))
        try:
            with transaction.atomic():
                job = Job.objects.create(kind=kind, params=params, dedup_key=key, created_by=user)
                audit.record(user, f"job.{kind}.started", job, after={"params": params})
        except IntegrityError:  # a concurrent identical request won the race: look again
            continue
        transaction.on_commit(functools.partial(_enqueue, job, celery_task))
        return job, True
    return Job.objects.get(dedup_key=key, status__in=in_flight), False


def _enqueue(job: Job, celery_task) -> None:
    publish(
        lambda: celery_task.delay(job.pk),
        on_failure=lambda exc: _not_queued(job, exc),
        on_published=lambda: Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now()),
    )


def _not_queued(job: Job, exc: Exception) -> None:
    """The broker refused the job's message: fail the job visibly, which also frees its request for a retry."""
    Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.FAILED,
        finished_at=timezone.now(),
        error=f"Not queued: the task queue (broker) was unavailable: {type(exc).__name__}: {exc}"[:20000],
    )


def _why_stuck(job: Job) -> str:
    if job.status == Job.Status.QUEUED:
        return (
            "no task message was published for it (the task queue or the process that started it failed "
            "before it was sent); start it again"
        )
    return f"its worker was lost (no heartbeat since {job.heartbeat_at.isoformat() if job.heartbeat_at else 'never'})"


def _fail_stuck(job: Job, reason: str) -> bool:
    """Fail ``job`` with ``reason`` if it is still in the state it was read in; True if it was."""
    done = Job.objects.filter(
        pk=job.pk, status=job.status, heartbeat_at=job.heartbeat_at, enqueued_at=job.enqueued_at
    ).update(status=Job.Status.FAILED, finished_at=timezone.now(), error=f"Stuck: {reason}"[:20000])
    if done:
        logger.warning("job %s failed as stuck: %s", job.pk, reason)
        audit.record(None, f"job.{job.kind}.failed", job, after={"status": Job.Status.FAILED, "reason": reason})
    return bool(done)


def sweep(*, celery_task, now: datetime | None = None) -> dict[str, list[int]]:
    """Find jobs nothing will finish and deal with them (the beat task ``curation.tasks.sweep_stuck_jobs``).

    * queued with no message behind them (``enqueued_at`` empty) ``ENQUEUE_GRACE_SECONDS`` after their
      creation: failed ("Stuck: no task message was published ...");
    * running with a heartbeat older than ``ML_STALE_AFTER_SECONDS`` and no message published since: its
      worker is gone, so it is re-enqueued (``celery_task.delay``, ``recoveries`` + 1; the delivery restarts
      it, and a second delivery finds a fresh heartbeat and waits: :class:`JobBusy`), or failed once it was
      re-enqueued ``MAX_RECOVERIES`` times or if the broker refuses the message.

    Returns ``{"failed": [ids], "requeued": [ids]}``.
    """
    now = now or timezone.now()
    out: dict[str, list[int]] = {"failed": [], "requeued": []}
    unpublished = Job.objects.filter(
        status=Job.Status.QUEUED,
        enqueued_at__isnull=True,
        created_at__lt=now - timedelta(seconds=ENQUEUE_GRACE_SECONDS),
    )
    for job in unpublished:
        if _fail_stuck(job, _why_stuck(job)):
            out["failed"].append(job.pk)
    abandoned = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale_before(now))
    )
    abandoned = abandoned.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=F("heartbeat_at")))
    for job in abandoned:
        if job.recoveries >= MAX_RECOVERIES:
            if _fail_stuck(job, f"{_why_stuck(job)}, and it was already re-enqueued {job.recoveries} times"):
                out["failed"].append(job.pk)
            continue
        claimed = Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at, enqueued_at=job.enqueued_at
        ).update(enqueued_at=now, recoveries=F("recoveries") + 1, message="re-enqueued: its worker was lost")
        if not claimed:
            continue  # it moved meanwhile
        try:
            publish(lambda job=job: celery_task.delay(job.pk))
        except BrokerUnavailable as exc:
            job.refresh_from_db()
            if _fail_stuck(job, f"{_why_stuck(job)}, and re-enqueueing it failed: {exc}"):
                out["failed"].append(job.pk)
        else:
            logger.warning("job %s re-enqueued: its worker was lost", job.pk)
            out["requeued"].append(job.pk)
    return out


def run(job_id: int) -> Job:
    """Run a job to the end (called by the Celery task); a redelivered finished job is left alone.

    Raises :class:`JobBusy` if the job is running elsewhere (fresh heartbeat), and lets database errors
    through (the task retries them) instead of recording them as the job's failure.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
            return job
        # RUNNING here = redelivered: the worker that ran it died, or a try lost the database. Handlers
        # start over (an export is built in a fresh temporary folder; an import's batches are idempotent),
        # so say so and reset the progress.
        restarted = job.status == Job.Status.RUNNING
        now = timezone.now()
        if restarted and job.heartbeat_at is not None and job.heartbeat_at > _stale_before(now):
            raise JobBusy(f"job {job.pk} is running elsewhere (heartbeat {job.heartbeat_at.isoformat()})")
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            **({"progress": 0.0, "message": "restarted: its worker was lost"} if restarted else {}),
        )

    def progress(fraction: float, message: str = "") -> None:
        Job.objects.filter(pk=job.pk).update(progress=max(0.0, min(1.0, fraction)), message=message[:500])

    def beat() -> None:
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())

    try:
        with heartbeat(beat, settings.ML_HEARTBEAT_SECONDS):
            result = HANDLERS[job.kind](job, progress)
    except database_errors():
        raise  # the database went away: the task retries; the job stays running (see the module docstring)
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

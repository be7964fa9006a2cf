"""Start, cancel and execute runs; the kinds and their handlers are listed in :mod:`.kinds`.

Imports: ``ml/tasks.py`` imports the services, so no service imports it (not even inside a function):
:func:`start_run` takes the Celery task that executes the run from its caller (the views, the API and
``ml.tasks.fire_schedule`` pass ``ml.tasks.execute_run``) and keeps here the rule for a broker that refuses
the message (the run fails visibly).

Nothing is left stuck (issue 15):

* ``enqueued_at`` is set once the run's message was published (:func:`config.celery.publish`); a refused
  publish, whatever the error (broker or result backend), fails the run ("Not queued: ...") and answers 503.
* A running run writes ``heartbeat_at`` every ``ML_HEARTBEAT_SECONDS`` from a thread that survives a
  database outage, so a heartbeat older than ``ML_STALE_AFTER_SECONDS`` means no process runs it. A delivery
  that finds the run running with a fresh heartbeat raises :class:`RunBusy` (retried later: never two at
  once); one that finds it stale resumes it.
* A database error inside a run (``OperationalError``/``InterfaceError``) is not recorded as the run's
  failure (the write would fail too): it propagates and ``ml.tasks.execute_run`` retries with back-off
  (:func:`config.celery.database_retry_countdown`); the retry resumes the run from what it recorded.
* :func:`sweep` (the beat task ``ml.tasks.sweep_stuck_runs``, every minute) fails runs queued with no
  message behind them, and re-enqueues runs running with a stale heartbeat and no message published since
  (they resume; ``MAX_RECOVERIES`` times, then, or if the broker refuses, they are failed with the reason).
"""

from __future__ import annotations

import logging
import socket
import traceback
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from annotation import roles
from annotation.services import audit
from config.celery import (
    ENQUEUE_GRACE_SECONDS,
    BrokerUnavailable,
    app,
    database_errors,
    heartbeat,
    publish,
)
from ml.models import ModelVersion, Run
from ml.services.runs.context import RunCancelled, RunContext
from ml.services.runs.kinds import HANDLERS, VALIDATORS
from ml.services.runs.params import RunParamsError

GPU_QUEUE = "gpu"


class RunBusy(Exception):
    """A redelivered run is still alive on another worker (its heartbeat is fresh): try later."""


#: How often :func:`sweep` re-enqueues a run whose worker was lost before it fails it instead.
MAX_RECOVERIES = 3

logger = logging.getLogger(__name__)


def _beat(run_id: int) -> None:
    Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now())


def validate_params(kind: str, params) -> tuple[dict, ModelVersion | None]:
    """Clean ``params`` for ``kind``: returns the params with defaults and the input model (if any)."""
    if kind not in Run.Kind.values:
        raise RunParamsError({"kind": f"must be one of {', '.join(Run.Kind.values)}, not {kind!r}"})
    if kind not in VALIDATORS:
        raise RunParamsError({"kind": f"{kind} runs are not available yet"})
    if not isinstance(params, dict):
        raise RunParamsError({"params": "must be an object"})
    return VALIDATORS[kind](params)


def start_run(user, kind: str, params: dict, *, celery_task, schedule=None) -> Run:
    """Create a queued run and enqueue it on the ``gpu`` queue when the transaction commits (admins):
    ``celery_task.apply_async(args=[run.pk], task_id=..., queue="gpu")``, ``celery_task`` being
    ``ml.tasks.execute_run``.

    If the broker cannot be reached, the run is marked failed ("Not queued: ...") and
    :class:`config.celery.BrokerUnavailable` is raised (a 503 for web requests).
    """
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may start runs.")
    cleaned, input_model = validate_params(kind, params)
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        run = Run.objects.create(
            kind=kind,
            params=cleaned,
            input_model=input_model,
            created_by=user,
            celery_task_id=task_id,
            schedule=schedule,
        )
        audit.record(user, "run.started", run, after={"kind": kind, "params": cleaned})
        transaction.on_commit(
            lambda: publish(
                lambda: celery_task.apply_async(args=[run.pk], task_id=task_id, queue=GPU_QUEUE),
                on_failure=lambda exc: _not_queued(run, exc),
                on_published=lambda: Run.objects.filter(pk=run.pk).update(enqueued_at=timezone.now()),
            )
        )
    return run


def _not_queued(run: Run, exc: Exception) -> None:
    """The broker refused the run's message: fail the run visibly (start it again once the broker is back)."""
    Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.FAILED,
        finished_at=timezone.now(),
        error=f"Not queued: the task queue (broker) was unavailable: {type(exc).__name__}: {exc}"[:50_000],
    )
    audit.record(None, "run.failed", run, after={"status": Run.Status.FAILED, "reason": "broker unavailable"})


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.ML_STALE_AFTER_SECONDS)


def _why_stuck(run: Run) -> str:
    if run.status == Run.Status.QUEUED:
        return (
            "no task message was published for it (the task queue or the process that started it failed "
            "before it was sent); start it again"
        )
    return f"its worker was lost (no heartbeat since {run.heartbeat_at.isoformat() if run.heartbeat_at else 'never'})"


def _fail_stuck(run: Run, reason: str) -> bool:
    """Fail ``run`` with ``reason`` if it is still in the state it was read in; True if it was."""
    done = Run.objects.filter(
        pk=run.pk, status=run.status, heartbeat_at=run.heartbeat_at, enqueued_at=run.enqueued_at
    ).update(status=Run.Status.FAILED, finished_at=timezone.now(), error=f"Stuck: {reason}"[:50_000])
    if done:
        logger.warning("run %s failed as stuck: %s", run.pk, reason)
        audit.record(None, "run.failed", run, after={"status": Run.Status.FAILED, "reason": reason})
    return bool(done)


def sweep(*, celery_task, now: datetime | None = None) -> dict[str, list[int]]:
    """Find runs nothing will finish and deal with them (the beat task ``ml.tasks.sweep_stuck_runs``).

    * queued with no message behind them (``enqueued_at`` empty) ``ENQUEUE_GRACE_SECONDS`` after their
      creation: failed ("Stuck: no task message was published ...");
    * running with a heartbeat older than ``ML_STALE_AFTER_SECONDS`` and no message published since (no
      live task: the heartbeat thread lives as long as the process running the run): re-enqueued with its
      task id on the ``gpu`` queue (``recoveries`` + 1) and resumed by the delivery; execute_run's busy check
      keeps a later redelivery of the old message from running it twice. Failed instead once it was
      re-enqueued ``MAX_RECOVERIES`` times, or if the broker refuses the message.

    Returns ``{"failed": [ids], "requeued": [ids]}``.
    """
    now = now or timezone.now()
    out: dict[str, list[int]] = {"failed": [], "requeued": []}
    unpublished = Run.objects.filter(
        status=Run.Status.QUEUED,
        enqueued_at__isnull=True,
        created_at__lt=now - timedelta(seconds=ENQUEUE_GRACE_SECONDS),
    )
    for run in unpublished:
        if _fail_stuck(run, _why_stuck(run)):
            out["failed"].append(run.pk)
    abandoned = Run.objects.filter(status=Run.Status.RUNNING).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale_before(now))
    )
    abandoned = abandoned.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=F("heartbeat_at")))
    for run in abandoned:
        if run.recoveries >= MAX_RECOVERIES:
            if _fail_stuck(run, f"{_why_stuck(run)}, and it was already re-enqueued {run.recoveries} times"):
                out["failed"].append(run.pk)
            continue
        claimed = Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING, heartbeat_at=run.heartbeat_at, enqueued_at=run.enqueued_at
        ).update(enqueued_at=now, recoveries=F("recoveries") + 1)
        if not claimed:
            continue  # it moved meanwhile
        task_id = run.celery_task_id or str(uuid.uuid4())
        try:
            publish(
                lambda run=run, task_id=task_id: celery_task.apply_async(
                    args=[run.pk], task_id=task_id, queue=GPU_QUEUE
                )
            )
        except BrokerUnavailable as exc:
            run.refresh_from_db()
            if _fail_stuck(run, f"{_why_stuck(run)}, and re-enqueueing it failed: {exc}"):
                out["failed"].append(run.pk)
        else:
            logger.warning("run %s re-enqueued: its worker was lost", run.pk)
            audit.record(None, "run.requeued", run, after={"reason": _why_stuck(run), "recoveries": run.recoveries + 1})
            out["requeued"].append(run.pk)
    return out


def cancel_run(user, run: Run) -> Run:
    """Cancel a queued or running run; a running one is also revoked with terminate.

    Handlers also poll for the cancellation between steps, so a run stops even where the revoke
    does not reach its worker (the embedded filesystem broker has no remote control).
    """
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may cancel runs.")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise ValueError(f"This run already {run.status}.")
        was = run.status
        run.status = Run.Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        audit.record(user, "run.cancelled", run, before={"status": was}, after={"status": run.status})
    if run.celery_task_id:
        task_id = run.celery_task_id
        # Queued: every worker discards the message. Running: the pool process gets SIGTERM, on
        # which the supervisor of a subprocess run kills its process group (see .supervise).
        transaction.on_commit(lambda: app.control.revoke(task_id, terminate=True, signal="SIGTERM"))
    return run


def execute_run(run_id: int, *, worker: str | None = None, task_id: str | None = None) -> Run:
    """Run a run to the end on this worker (called by ``ml.tasks.execute_run``).

    Raises :class:`RunBusy` if the run is alive elsewhere (fresh heartbeat), and lets database errors through
    (the task retries them; the run stays running and the retry resumes it) instead of recording them.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            return run  # redelivered after it finished (or cancelled while queued)
        resumed = run.status == Run.Status.RUNNING
        stale_before = timezone.now() - timedelta(seconds=settings.ML_STALE_AFTER_SECONDS)
        if resumed and run.heartbeat_at is not None and run.heartbeat_at > stale_before:
            raise RunBusy(f"run {run.pk} is alive on {run.worker}")
        run.status = Run.Status.RUNNING
        run.heartbeat_at = timezone.now()
        run.worker = (worker or socket.gethostname())[:255]
        run.celery_task_id = task_id or run.celery_task_id
        run.started_at = run.started_at or timezone.now()
        run.save(update_fields=["status", "worker", "celery_task_id", "started_at", "heartbeat_at"])
    ctx = RunContext(run)
    ctx.log(f"{'resumed' if resumed else 'started'} {run.kind} run {run.pk} on {run.worker}")
    ctx.progress(phase="starting")
    try:
        handler = HANDLERS.get(run.kind)
        if handler is None:
            raise ValueError(f"{run.kind} runs are not available yet")
        with heartbeat(lambda: _beat(run.pk), settings.ML_HEARTBEAT_SECONDS):
            handler(run, ctx)
    except RunCancelled:
        ctx.log("cancelled")
    except database_errors():
        raise  # the database went away mid-run: the task retries and resumes it (see the module docstring)
    except Exception as exc:  # stored for the UI; the task itself succeeds so Celery does not retry blindly
        ctx.log(f"failed: {type(exc).__name__}: {exc}")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.FAILED,
            finished_at=timezone.now(),
            phase="",
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"[:50_000],
        )
    else:
        ctx.log("succeeded")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.SUCCEEDED, finished_at=timezone.now(), progress=1.0, phase=""
        )
    run.refresh_from_db()
    if run.status != Run.Status.CANCELLED:  # cancel_run recorded the cancellation with its actor
        audit.record(None, f"run.{run.status}", run, after={"status": run.status, "worker": run.worker})
    return run

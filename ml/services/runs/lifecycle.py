"""Start, cancel and execute runs; the kinds and their handlers are listed in :mod:`.kinds`.

Imports: ``ml/tasks.py`` imports the services, so no service imports it (not even inside a function):
:func:`start_run` takes the Celery task that executes the run from its caller (the views, the API and
``ml.tasks.fire_schedule`` pass ``ml.tasks.execute_run``) and keeps here the rule for a broker that refuses
the message (the run fails visibly).
"""

from __future__ import annotations

import socket
import threading
import traceback
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from annotation import roles
from annotation.services import audit
from config.celery import app, publish
from ml.models import ModelVersion, Run
from ml.services.runs.context import RunCancelled, RunContext
from ml.services.runs.kinds import HANDLERS, VALIDATORS
from ml.services.runs.params import RunParamsError

GPU_QUEUE = "gpu"


class RunBusy(Exception):
    """A redelivered run is still alive on another worker (its heartbeat is fresh): try later."""


@contextmanager
def heartbeat(run_id: int):
    """Refresh ``Run.heartbeat_at`` every ``ML_HEARTBEAT_SECONDS`` from a thread while the body runs."""
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.ML_HEARTBEAT_SECONDS):
                Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
    """Run a run to the end on this worker (called by ``ml.tasks.execute_run``)."""
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
    try:
        handler = HANDLERS.get(run.kind)
        if handler is None:
            raise ValueError(f"{run.kind} runs are not available yet")
        with heartbeat(run.pk):
            handler(run, ctx)
    except RunCancelled:
        ctx.log("cancelled")
    except Exception as exc:  # stored for the UI; the task itself succeeds so Celery does not retry blindly
        ctx.log(f"failed: {type(exc).__name__}: {exc}")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.FAILED,
            finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"[:50_000],
        )
    else:
        ctx.log("succeeded")
        Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.SUCCEEDED, finished_at=timezone.now(), progress=1.0
        )
    run.refresh_from_db()
    if run.status != Run.Status.CANCELLED:  # cancel_run recorded the cancellation with its actor
        audit.record(None, f"run.{run.status}", run, after={"status": run.status, "worker": run.worker})
    return run

"""Runs and jobs left ``running`` with nobody running them (issue 15, item 4).

* A database outage mid-run (PostgreSQL behind a proxy taken down while a real worker generates): the
  task retries with back-off and the run resumes and completes once the database is back, without
  duplicates. Before, the OperationalError was acknowledged with the message and the run stayed ``running``
  forever with a stale heartbeat and no error.
* A run and a job ``running`` with a stale heartbeat and no worker (a worker lost with its message, or a
  task that gave up its database retries): the stuck-work sweep re-enqueues them and real workers resume
  them to the end; one already re-enqueued ``MAX_RECOVERIES`` times is failed visibly instead; a fresh
  heartbeat is left alone.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from annotation.models import Image, Pair
from config.celery import app
from curation.models import Job
from curation.services import jobs
from curation.tasks import sweep_stuck_jobs
from ml.models import Run
from ml.services import registry, runs
from ml.services.runs import lifecycle
from ml.tasks import execute_run, sweep_stuck_runs
from tests.support.factories import TupleFactory
from tests.support.fault_workers import QueueWorker, small_version
from tests.support.outages import database_address, database_url
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.CELERY_BROKER_URL == "filesystem://", reason="needs a broker server (Redis)"),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.slow,
]
TUPLES = 30
DB_OUTAGE = 6.0


@pytest.fixture
def workers(settings, tmp_path):
    settings.ML_WORK_ROOT = tmp_path / "work"
    settings.ML_MODEL_ROOT = tmp_path / "models"
    made = []

    def make(queue: str, env: dict | None = None) -> QueueWorker:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
        worker = QueueWorker(tmp_path, queue=queue, env=env)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def _tiny_flux(admin_user, tmp_path):
    from ml.core.tiny_flux import make_tiny_flux

    return registry.register_model(admin_user, "generator_base", "tiny-flux", str(make_tiny_flux(tmp_path / "f")))


def _done(run: Run) -> int:
    run.refresh_from_db()
    return len(run.artifacts.get("done_tuples", []))


def test_a_run_that_loses_its_database_mid_way_resumes_and_completes_once_it_is_back(admin_user, workers, tmp_path):
    model = _tiny_flux(admin_user, tmp_path)
    tuples = [TupleFactory() for _ in range(TUPLES)]
    proxy = TcpProxy(database_address())
    proxy.up()
    worker = workers("gpu", env={"DATABASE_URL": database_url(proxy.port)})  # the worker reaches PostgreSQL via it
    worker.start()
    try:
        run = runs.start_run(
            admin_user,
            "generate",
            {"model": model.pk, "tuples": [t.pk for t in tuples], "steps": 4, "width": 32, "height": 32, "seed": 5},
            celery_task=execute_run,
        )
        wait_for(lambda: _done(run) >= 2, 240, "two tuples generated", worker)
        proxy.down()
        done_at_outage = _done(run)
        time.sleep(DB_OUTAGE)
        run.refresh_from_db()
        assert run.status == Run.Status.RUNNING and done_at_outage < TUPLES, "the outage came too late"
        proxy.up()
        wait_for(lambda: run.refresh_from_db() or run.status in Run.FINISHED, 300, "the run to finish", worker)
    finally:
        proxy.down()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert "OperationalError" in worker.log() and "resumed generate run" in run.log_tail
    assert run.artifacts["done_tuples"] == [t.pk for t in tuples]
    assert Image.objects.count() == 2 * TUPLES and Pair.objects.count() == TUPLES
    assert sorted(Pair.objects.values_list("tuple_id", flat=True)) == sorted(t.pk for t in tuples)
    print(f"database down {DB_OUTAGE}s after {done_at_outage}/{TUPLES} tuples: the run resumed and completed")  # noqa: T201


def test_the_sweep_resumes_a_run_and_a_job_whose_worker_is_gone_and_fails_one_it_cannot_save(
    admin_user, workers, tmp_path
):
    model = _tiny_flux(admin_user, tmp_path)
    tuples = [TupleFactory() for _ in range(3)]
    long_ago = timezone.now() - timedelta(hours=1)
    orphan = Run.objects.create(  # a worker took it, wrote a heartbeat, then vanished with its message
        kind="generate",
        params=runs.validate_params(
            "generate", {"model": model.pk, "tuples": [t.pk for t in tuples], "steps": 2, "width": 16, "height": 16}
        )[0],
        input_model=model,
        created_by=admin_user,
        status=Run.Status.RUNNING,
        celery_task_id="lost-task",
        started_at=long_ago,
        heartbeat_at=long_ago,
        enqueued_at=long_ago - timedelta(seconds=1),
        worker="gone@nowhere",
    )
    hopeless = Run.objects.create(
        kind="generate",
        params=orphan.params,
        created_by=admin_user,
        status=Run.Status.RUNNING,
        heartbeat_at=long_ago,
        recoveries=lifecycle.MAX_RECOVERIES,
    )
    alive = Run.objects.create(
        kind="generate",
        params=orphan.params,
        created_by=admin_user,
        status=Run.Status.RUNNING,
        heartbeat_at=timezone.now(),
    )
    params = {"version": small_version(admin_user, 3).pk, "format": "jsonl"}
    job = Job.objects.create(
        kind=Job.Kind.EXPORT,
        params=params,
        dedup_key=jobs.dedup_key(Job.Kind.EXPORT, params),
        created_by=admin_user,
        status=Job.Status.RUNNING,
        started_at=long_ago,
        heartbeat_at=long_ago,
        progress=0.4,
    )
    gpu, default = workers("gpu"), workers("default")
    gpu.start()
    default.start()

    assert sweep_stuck_runs() == {"failed": [hopeless.pk], "requeued": [orphan.pk]}
    assert sweep_stuck_jobs() == {"failed": [], "requeued": [job.pk]}
    assert sweep_stuck_runs() == {"failed": [], "requeued": []}, "a message is pending: not re-enqueued twice"
    assert sweep_stuck_jobs() == {"failed": [], "requeued": []}
    hopeless.refresh_from_db()
    assert hopeless.status == Run.Status.FAILED and hopeless.error.startswith("Stuck: its worker was lost")
    assert "re-enqueued 3 times" in hopeless.error
    alive.refresh_from_db()
    assert alive.status == Run.Status.RUNNING, "a fresh heartbeat means a live worker"

    wait_for(lambda: Job.objects.get(pk=job.pk).status != Job.Status.RUNNING, 120, "the job to finish", default)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.recoveries == 1 and job.result["counts"]["rows"] == 3
    wait_for(lambda: orphan.refresh_from_db() or orphan.status in Run.FINISHED, 300, "the run to finish", gpu)
    assert orphan.status == Run.Status.SUCCEEDED, orphan.error
    assert orphan.recoveries == 1 and "resumed generate run" in orphan.log_tail
    assert Pair.objects.filter(tuple__in=tuples).count() == 3 == orphan.artifacts["pairs_created"]
    Run.objects.filter(pk=alive.pk).update(status=Run.Status.CANCELLED)

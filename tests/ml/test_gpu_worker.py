"""Runs on a real Celery worker process (prefork, not eager) with Redis as broker and PostgreSQL:
generation fills the queue, training registers a version, cancel stops a running job, and a
worker killed mid-training is replaced by another that resumes the run from its checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from annotation.models import Pair
from annotation.services import queue
from config.celery import app
from ml.models import ModelVersion, Run
from ml.services import registry, runs
from ml.tasks import execute_run
from tests.support.factories import TupleFactory
from tests.support.worker_process import WorkerProcess, wait_for

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

    model = registry.register_model(admin_user, "generator_base", "tiny-flux", str(make_tiny_flux(tmp_path / "flux")))
    tuples = [TupleFactory(), TupleFactory()]
    run = runs.start_run(
        admin_user,
        "generate",
        {"model": model.pk, "tuples": [t.pk for t in tuples], "steps": 2, "width": 16, "height": 16},
        celery_task=execute_run,
    )
    wait_for(lambda: _status(run) in Run.FINISHED, 180, "the generate run to finish", worker)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("gpu-test-1@")
    assert Pair.objects.filter(tuple__in=tuples).count() == 2
    assert queue.next_lease(annotator) is not None


# --- scorer training on the worker: cancel, and kill then resume -----------------------------------


@pytest.fixture
def scorer_version(admin_user, tmp_path):
    from tests.support.scoring_data import synthetic_version, tiny_scorer

    tiny_scorer(admin_user, tmp_path / "active", name="active", seed=1, active=True)
    return synthetic_version(admin_user, {"train": 8, "validation": 4, "test_S": 2, "test_C": 2})


def _train(admin_user, version, total_steps: int, checkpoint_every: int) -> Run:
    return runs.start_run(
        admin_user,
        "train_scorer",
        {
            "dataset_version": version.pk,
            "total_steps": total_steps,
            "warmup_steps": 0,
            "lr": 1e-3,
            "batch_size": 2,
            "eval_every": 0,
            "checkpoint_every": checkpoint_every,
            "save_format": "open_clip",
        },
        celery_task=execute_run,
    )


def _trainer_group(run: Run) -> int | None:
    run.refresh_from_db()
    return (run.artifacts.get("process") or {}).get("pgid")


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancelling_a_running_training_stops_its_processes_and_spares_the_worker(admin_user, scorer_version, worker):
    run = _train(admin_user, scorer_version, total_steps=100_000, checkpoint_every=0)
    wait_for(lambda: _status(run) == Run.Status.RUNNING and run.metrics, 180, "training to log a step", worker)
    pgid = _trainer_group(run)
    assert pgid and _alive(pgid)

    runs.cancel_run(admin_user, run)
    wait_for(lambda: not _alive(pgid), 30, "the trainer's process group to stop", worker)
    assert _status(run) == Run.Status.CANCELLED
    assert worker.proc.poll() is None, "the worker itself must survive a cancel"
    assert not ModelVersion.objects.filter(name=f"run-{run.pk}").exists()


def test_a_worker_killed_mid_training_is_replaced_and_the_run_resumes_to_one_version(
    admin_user, scorer_version, worker, settings
):
    run = _train(admin_user, scorer_version, total_steps=400, checkpoint_every=10)
    out = Path(settings.ML_WORK_ROOT) / f"run-{run.pk}" / "train"
    checkpoints = out / "checkpoints"
    wait_for(
        lambda: any((p / "trainer_state.json").is_file() for p in checkpoints.glob("step-*")),
        240,
        "a first checkpoint",
        worker,
    )
    pgid = _trainer_group(run)
    worker.kill()
    wait_for(lambda: not _alive(pgid), 30, "the orphaned trainer to die with its worker")
    assert not (out / "summary.json").exists(), "training finished before the worker was killed"
    # Tag what the first delivery wrote: a resumed trainer keeps these lines up to its checkpoint,
    # a trainer that started over would have dropped them all.
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (out / "metrics.jsonl").write_text("".join(json.dumps({**line, "delivery": 1}) + "\n" for line in lines))
    assert _status(run) == Run.Status.RUNNING

    worker.start()  # a fresh worker: the unacknowledged message comes back after the visibility timeout
    wait_for(lambda: _status(run) in Run.FINISHED, 300, "the redelivered run to finish", worker)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("gpu-test-2@")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [m["step"] for m in metrics] == list(range(1, 401))
    kept = [m["step"] for m in metrics if m.get("delivery") == 1]
    assert kept and kept[-1] % 10 == 0, "the second delivery resumed from the first one's last checkpoint"
    assert ModelVersion.objects.filter(name=f"run-{run.pk}").count() == 1
    assert run.output_model.dataset_version == scorer_version

"""Background jobs: one in flight per identical request, progress and errors stored (curation.services.jobs)."""

import pytest

from curation.models import Job
from curation.services import jobs
from curation.tasks import run_job

pytestmark = pytest.mark.django_db


def succeed(job, progress):
    progress(0.5, "half way")
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
    return {"echo": job.params}


def fail(job, progress):
    raise RuntimeError("disk full")


@pytest.fixture
def handlers(monkeypatch):
    monkeypatch.setitem(jobs.HANDLERS, Job.Kind.EXPORT, succeed)
    monkeypatch.setitem(jobs.HANDLERS, Job.Kind.IMPORT, fail)


def test_it_returns_the_in_flight_job_for_an_identical_request(
    admin_user, handlers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        first, created = jobs.start(
            Job.Kind.EXPORT, {"version": 1, "format": "parquet"}, admin_user, celery_task=run_job
        )
        again, created_again = jobs.start(
            Job.Kind.EXPORT, {"format": "parquet", "version": 1}, admin_user, celery_task=run_job
        )
    assert created and not created_again and again.pk == first.pk
    assert len(callbacks) == 1
    other, created_other = jobs.start(
        Job.Kind.EXPORT, {"version": 2, "format": "parquet"}, admin_user, celery_task=run_job
    )
    assert created_other and other.pk != first.pk


def test_it_runs_a_job_to_success_with_its_result(admin_user, handlers):
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": 1}, admin_user, celery_task=run_job)
    job = jobs.run(job.pk)
    assert (job.status, job.progress, job.result) == (Job.Status.SUCCEEDED, 1.0, {"echo": {"version": 1}})
    again, created = jobs.start(Job.Kind.EXPORT, {"version": 1}, admin_user, celery_task=run_job)
    assert created, "a finished job no longer blocks a new identical request"


def test_it_stores_the_error_of_a_failed_job(admin_user, handlers):
    job, _ = jobs.start(Job.Kind.IMPORT, {"path": "x"}, admin_user, celery_task=run_job)
    job = jobs.run(job.pk)
    assert job.status == Job.Status.FAILED and "disk full" in job.error and "Traceback" in job.error


def test_it_leaves_a_redelivered_finished_job_alone(admin_user, handlers):
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": 1}, admin_user, celery_task=run_job)
    finished = jobs.run(job.pk).finished_at
    assert jobs.run(job.pk).finished_at == finished

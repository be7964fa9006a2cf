"""A background job's page in a real Chromium follows the job without reloading (issue 16: the page used a
<meta refresh>, which axe-core rates critical, and which reloaded the whole page every two seconds).

While the job is in flight, its status, progress and message change in place (the same document: a marker set on
the window survives); once it has finished, the page reloads once and shows the result.
"""

import pytest
from playwright.sync_api import expect

from curation.models import Job
from curation.services import jobs
from curation.tasks import run_job
from tests.support.browser import accessibility_violations, chromium_page, screenshot, sign_in
from tests.support.factories import make_user
from tests.support.versions import make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def test_the_page_follows_a_running_job_in_place_and_reloads_once_it_has_failed(live_server):
    admin = make_user("curator", "admin", password=PASSWORD)
    version = make_version(admin)
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": version.pk, "format": "parquet"}, admin, celery_task=run_job)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)  # whatever the broker did, it waits
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto(f"/curation/jobs/{job.pk}/")
        expect(page.locator("#job-status")).to_have_text("queued")
        assert accessibility_violations(page) == []
        page.evaluate("window.sameDocument = true")

        Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, progress=0.42, message="3 of 6 members")
        expect(page.locator("#job-status")).to_have_text("running", timeout=10_000)
        expect(page.locator("#job-percent")).to_have_text("42%")
        expect(page.locator("#job-message")).to_have_text("3 of 6 members")
        assert page.evaluate("window.sameDocument") is True, "updated in place, not reloaded"
        screenshot(page, "job-page-running")

        Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, error="Disk full\n\nTraceback: boom")
        expect(page.locator("#job-error")).to_be_visible(timeout=10_000)
        assert page.evaluate("window.sameDocument === undefined"), "reloaded once to show the result"
        expect(page.locator("#job-status")).to_have_text("failed")

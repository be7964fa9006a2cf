"""Admin pages for exports and imports (curation/views_jobs.py): the version page's Export section, the job
status page (/curation/jobs/<id>/) and the import form (/curation/imports/new/). Admins only; CSRF on POST."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from curation.models import Job
from curation.services import exporting, jobs
from curation.tasks import run_job
from tests.support.datasets import train_row, write_train
from tests.support.versions import make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(settings, tmp_path) -> Path:
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORT_ROOTS = [str(folder), str(tmp_path / "second-root")]
    return folder


def version_url(version) -> str:
    return reverse("curation:version-detail", args=[version.pk])


def export_url(version) -> str:
    return reverse("curation:version-export", args=[version.pk])


def job_url(job) -> str:
    return reverse("curation:job-detail", args=[getattr(job, "pk", job)])


IMPORT_URL = "/curation/imports/new/"


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- permissions ---------------------------------------------------------------------------------


def test_pages_are_for_admins_only(client, annotator, reviewer, admin_user, root):
    version = make_version(admin_user)
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": version.pk, "format": "jsonl"}, admin_user, celery_task=run_job)
    get_urls = [job_url(job), IMPORT_URL]
    post_urls = [(export_url(version), {"format": "parquet"}), (IMPORT_URL, {"path": "x", "format": "auto"})]

    for url in get_urls + [u for u, _ in post_urls]:
        response = client.get(url) if url in get_urls else client.post(url, {})
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url

    for user in (annotator, reviewer):
        client.force_login(user)
        for url in get_urls:
            assert client.get(url).status_code == 403, (user, url)
        for url, body in post_urls:
            assert client.post(url, body).status_code == 403, (user, url)
    assert Job.objects.count() == 1, "refused requests start nothing"

    client.force_login(reviewer)  # reviewers read the version page, without the Export section
    page = client.get(version_url(version))
    assert page.status_code == 200 and b'id="exports"' not in page.content
    client.force_login(admin_user)
    page = client.get(version_url(version))
    assert b'id="exports"' in page.content
    assert b'href="/curation/imports/new/"' in page.content, "the admin nav links the import page"
    assert client.get(export_url(version)).status_code == 405, "starting an export is a POST"


def test_posts_need_the_csrf_token(admin_user, root):
    version = make_version(admin_user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(export_url(version), {"format": "parquet"}).status_code == 403
    assert client.post(IMPORT_URL, {"path": "x", "format": "auto"}).status_code == 403
    assert not Job.objects.exists()
    page = client.get(version_url(version))
    token = page.cookies["csrftoken"].value
    response = client.post(export_url(version), {"format": "parquet", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and Job.objects.count() == 1


# --- exports from the version page ---------------------------------------------------------------


def test_the_version_page_offers_one_button_per_format(client, admin_user):
    version = make_version(admin_user)
    client.force_login(admin_user)
    page = client.get(version_url(version)).content.decode()
    for fmt in exporting.FORMATS:
        assert f'id="export-{fmt}" data-finished="false"' in page
        assert f'<input type="hidden" name="format" value="{fmt}">' in page
    assert page.count(f'action="{export_url(version)}"') == len(exporting.FORMATS)
    assert "csrfmiddlewaretoken" in page


def test_starting_an_export_twice_gives_the_same_job(client, admin_user, django_capture_on_commit_callbacks):
    version = make_version(admin_user)
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = client.post(export_url(version), {"format": "parquet"})
        second = client.post(export_url(version), {"format": "parquet"})
    assert first.status_code == second.status_code == 302
    job = Job.objects.get()
    assert (job.kind, job.params, job.status) == ("export", {"version": version.pk, "format": "parquet"}, "queued")
    assert first["Location"] == second["Location"] == job_url(job)
    assert len(callbacks) == 1, "one job enqueued for two identical requests"

    again = client.get(second["Location"])
    assert b"already under way" in again.content
    # the API's request is the same request: it joins the job
    api_job, created = jobs.start(
        Job.Kind.EXPORT, {"version": version.pk, "format": "parquet"}, admin_user, celery_task=run_job
    )
    assert api_job.pk == job.pk and not created
    page = client.get(version_url(version)).content.decode()
    assert f'href="{job_url(job)}"' in page, "the version page links the job in flight"
    assert 'id="export-jsonl" data-finished="false"' in page


def test_an_unknown_format_starts_nothing(client, admin_user):
    version = make_version(admin_user)
    client.force_login(admin_user)
    response = client.post(export_url(version), {"format": "csv"}, follow=True)
    assert response.status_code == 200 and b"Unknown export format" in response.content
    assert not Job.objects.exists()
    assert (
        client.post(reverse("curation:version-export", args=[version.pk + 999]), {"format": "parquet"}).status_code
        == 404
    )


def test_the_job_page_shows_progress_and_follows_the_job_while_in_flight(client, admin_user):
    version = make_version(admin_user)
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": version.pk, "format": "parquet"}, admin_user, celery_task=run_job)
    client.force_login(admin_user)
    page = client.get(job_url(job)).content.decode()
    assert 'data-status="queued"' in page and 'data-kind="export"' in page
    assert f'data-follow="/api/curation/jobs/{job.pk}/" data-refresh="2"' in page and "js/job.js" in page
    assert "http-equiv" not in page, "no <meta refresh>: the page follows the job by script (static/js/job.js)"
    assert '<progress class="job-progress" id="job-progress" max="100" value="0">' in page

    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, progress=0.42, message="3 of 6 members")
    page = client.get(job_url(job)).content.decode()
    assert 'id="job-status" aria-live="polite">running<' in page and 'value="42"' in page and "3 of 6 members" in page
    assert "data-follow=" in page
    assert f"&quot;version&quot;: {version.pk}" in page, "the parameters are shown"

    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED, progress=0.5, error="Disk full\n\nTraceback (most recent call last):\n  boom"
    )
    page = client.get(job_url(job)).content.decode()
    assert "data-follow=" not in page and "js/job.js" not in page, "a finished job is not followed"
    assert 'class="error">Disk full<' in page
    assert "<details><summary>Traceback</summary>" in page and "most recent call last" in page
    assert client.get(job_url(job.pk + 999)).status_code == 404


def test_a_finished_export_links_its_files(client, admin_user, eager_celery, django_capture_on_commit_callbacks):
    version = make_version(admin_user)
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(export_url(version), {"format": "parquet"})
    job = Job.objects.get()
    assert response["Location"] == job_url(job)
    assert job.status == Job.Status.SUCCEEDED, job.error

    page = client.get(job_url(job)).content.decode()
    assert 'data-status="succeeded"' in page and 'value="100"' in page
    assert "data-follow=" not in page
    assert str(Path(job.result["path"])) not in page, "no server paths on the page"
    finished = exporting.finished_export(version, "parquet")
    shard = next(f for f in finished["files"] if f["path"].endswith(".parquet"))
    link = reverse(
        "curation-export-download", kwargs={"version_id": version.pk, "export_format": "parquet", "path": shard["path"]}
    )
    assert f'href="{link}"' in page and shard["sha256"] in page

    version_page = client.get(version_url(version)).content.decode()
    assert 'id="export-parquet" data-finished="true"' in version_page
    assert f'href="{link}"' in version_page and shard["sha256"] in version_page
    assert "MANIFEST.sha256" in version_page
    assert version_page.count(f'action="{export_url(version)}"') == len(exporting.FORMATS) - 1, (
        "buttons only for the formats not exported"
    )

    body = content(client.get(link))
    assert hashlib.sha256(body).hexdigest() == shard["sha256"]
    ranged = client.get(link, HTTP_RANGE="bytes=0-3")
    assert ranged.status_code == 206 and content(ranged) == body[:4]

    again = client.post(export_url(version), {"format": "parquet"})
    assert again.status_code == 302 and again["Location"].endswith(version_url(version) + "#exports")
    assert Job.objects.count() == 1, "a finished export starts no job"


# --- imports -------------------------------------------------------------------------------------


def test_the_import_page_lists_the_roots_and_the_first_roots_files(client, admin_user, root):
    write_train(root / "hub" / "train.parquet", [train_row("A nail in the rain")])
    (root / "prompts.json").write_text("[]")
    (root / ".hidden").write_text("x")
    client.force_login(admin_user)
    page = client.get(IMPORT_URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert str(root.resolve()) in text and "second-root" in text
    assert "<code>hub/</code>" in text and "<code>prompts.json</code>" in text and ".hidden" not in text
    assert 'href="?path=prompts.json"' in text
    assert 'value="prompts.json"' in client.get(IMPORT_URL + "?path=prompts.json").content.decode()
    for fmt in ("auto", "parquet", "jsonl", "prompts"):
        assert f'<option value="{fmt}"' in text
    assert 'name="dry_run"' in text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.parquet", "is not under an import root"),
        ("/etc/passwd", "is not under an import root"),
        ("missing.parquet", "does not exist"),
        ("", "This field is required"),
    ],
)
def test_the_import_form_refuses_bad_paths(client, admin_user, root, path, message):
    (root.parent / "outside.parquet").write_text("x")
    client.force_login(admin_user)
    response = client.post(IMPORT_URL, {"path": path, "format": "auto"})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'id="path-error"' in response.content.decode()
    assert not Job.objects.exists()


def test_the_import_form_starts_a_job_and_redirects_to_it(
    client, admin_user, root, eager_celery, django_capture_on_commit_callbacks
):
    dataset = write_train(
        root / "hub" / "train.parquet",
        [train_row("A nail in the rain for weeks"), train_row("A cork in water", category="Buoyancy")],
    )
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        dry = client.post(IMPORT_URL, {"path": "hub/train.parquet", "format": "parquet", "dry_run": "on"})
    job = Job.objects.get()
    assert dry.status_code == 302 and dry["Location"] == job_url(job)
    assert job.params == {
        "path": str(dataset.resolve()),
        "fmt": "parquet",
        "split": None,
        "source": None,
        "task_default": None,
        "auto_task": False,
        "merge_same_prompt": False,
        "decisions": "import",
        "dry_run": True,
    }
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["dry_run"] is True and job.result["pairs"]["created"] == 2
    from annotation.models import Pair

    assert not Pair.objects.exists(), "a dry run writes nothing"

    with django_capture_on_commit_callbacks(execute=True):
        real = client.post(IMPORT_URL, {"path": str(dataset), "format": "auto"})
    job = Job.objects.exclude(pk=job.pk).get()
    assert real["Location"] == job_url(job) and job.status == Job.Status.SUCCEEDED, job.error
    assert Pair.objects.count() == 2
    page = client.get(job_url(job)).content.decode()
    assert 'data-kind="import"' in page and 'data-status="succeeded"' in page
    assert "created 2, skipped 0" in page


def test_an_import_with_row_errors_shows_them_on_the_job_page(
    client, admin_user, root, eager_celery, django_capture_on_commit_callbacks
):
    write_train(root / "bad.parquet", [train_row("A nail in the rain"), train_row("Alchemy", category="Alchemy")])
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(IMPORT_URL, {"path": "bad.parquet", "format": "auto"})
    page = client.get(response["Location"]).content.decode()
    assert 'data-status="failed"' in page and "1 row(s) have errors" in page
    assert 'id="import-errors"' in page and "Alchemy" in page


def test_an_identical_import_in_flight_is_the_same_job(client, admin_user, root, django_capture_on_commit_callbacks):
    write_train(root / "train.parquet", [train_row("A nail in the rain")])
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = client.post(IMPORT_URL, {"path": "train.parquet", "format": "auto"})
        second = client.post(IMPORT_URL, {"path": str(root / "train.parquet"), "format": "auto"})
    assert first["Location"] == second["Location"] and len(callbacks) == 1 and Job.objects.count() == 1

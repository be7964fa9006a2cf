"""The export API: 202 with a job, identical in-flight requests share it, a finished export answers 200 with
its download URLs; the job endpoint; downloads with HTTP Range; admins only; no path traversal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.urls import reverse

from curation.models import Job
from curation.services import exporting
from tests.support.versions import make_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


def exports_url(version) -> str:
    return reverse("curation-version-exports", kwargs={"version_id": version.pk})


def download_url(version, fmt, path) -> str:
    return reverse("curation-export-download", kwargs={"version_id": version.pk, "export_format": fmt, "path": path})


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_start_an_export_dedup_then_serve_it_cached(api, admin_user, django_capture_on_commit_callbacks):
    version = make_version(admin_user)
    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(exports_url(version), {"format": "parquet"}, format="json")
        again = api.post(exports_url(version), {"format": "parquet"}, format="json")
    assert first.status_code == again.status_code == 202
    assert first.data["id"] == again.data["id"] and first.data["status"] == "queued"
    assert {"id", "status", "progress", "message", "result", "error"} <= set(first.data)
    assert len(callbacks) == 1, "one job enqueued for two identical requests"
    for callback in callbacks:
        callback()  # the commit happens: the (eager) Celery task runs the export
    job = api.get(reverse("curation-job", kwargs={"job_id": first.data["id"]}))
    assert job.status_code == 200
    assert job.data["status"] == "succeeded" and job.data["progress"] == 1.0, job.data["error"]
    assert job.data["result"]["counts"]["rows"] == 6

    done = api.post(exports_url(version), {"format": "parquet"}, format="json")
    assert done.status_code == 200
    assert Job.objects.count() == 1, "a finished export starts no job"
    assert "path" not in done.data, "no server paths in the API"
    files = {f["path"]: f for f in done.data["files"]}
    assert {"README.md", "MANIFEST.sha256", "export.json", "data/train-00000-of-00001.parquet"} <= set(files)
    train = files["data/train-00000-of-00001.parquet"]
    assert train["url"].endswith(download_url(version, "parquet", "data/train-00000-of-00001.parquet"))
    response = api.get(train["url"])
    assert response.status_code == 200 and response["Accept-Ranges"] == "bytes"
    body = content(response)
    assert len(body) == train["bytes"] and hashlib.sha256(body).hexdigest() == train["sha256"]
    listing = api.get(exports_url(version))
    assert [e["format"] for e in listing.data] == ["parquet"]
    detail = api.get(reverse("curation-version-export", kwargs={"version_id": version.pk, "export_format": "parquet"}))
    assert detail.status_code == 200 and detail.data["counts"]["rows"] == 6
    missing = api.get(reverse("curation-version-export", kwargs={"version_id": version.pk, "export_format": "jsonl"}))
    assert missing.status_code == 404


def test_the_export_runs_inline_with_eager_celery(api, admin_user, django_capture_on_commit_callbacks):
    version = make_version(admin_user, [("train", "expected")])
    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(exports_url(version), {"format": "jsonl"}, format="json")
    assert started.status_code == 202
    assert Job.objects.get(pk=started.data["id"]).status == Job.Status.SUCCEEDED
    assert exporting.finished_export(version, "jsonl") is not None
    assert api.post(exports_url(version), {"format": "jsonl"}, format="json").status_code == 200


def test_bad_requests(api, admin_user):
    version = make_version(admin_user, [])
    api.force_authenticate(admin_user)
    assert api.post(exports_url(version), {"format": "csv"}, format="json").status_code == 400
    assert (
        api.post(
            reverse("curation-version-exports", kwargs={"version_id": 999999}), {"format": "jsonl"}, format="json"
        ).status_code
        == 404
    )
    assert api.get(reverse("curation-job", kwargs={"job_id": 999999})).status_code == 404


@pytest.fixture
def exported(admin_user):
    version = make_version(admin_user, [("train", "expected"), ("train", "other")])
    result = exporting.export_version(version, "jsonl")
    return version, Path(result["path"])


def test_range_downloads(api, admin_user, exported):
    version, folder = exported
    api.force_authenticate(admin_user)
    url = download_url(version, "jsonl", "tuples.jsonl")
    data = (folder / "tuples.jsonl").read_bytes()
    size = len(data)

    part = api.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert content(part) == data[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{size}" and part["Content-Length"] == "10"
    assert part["Accept-Ranges"] == "bytes"

    suffix = api.get(url, HTTP_RANGE="bytes=-5")
    assert suffix.status_code == 206 and content(suffix) == data[-5:]
    assert suffix["Content-Range"] == f"bytes {size - 5}-{size - 1}/{size}"

    open_ended = api.get(url, HTTP_RANGE="bytes=100-")
    assert open_ended.status_code == 206 and content(open_ended) == data[100:]

    clamped = api.get(url, HTTP_RANGE=f"bytes={size - 3}-{size + 100}")
    assert clamped.status_code == 206 and content(clamped) == data[-3:]

    past = api.get(url, HTTP_RANGE=f"bytes={size}-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{size}"
    assert api.get(url, HTTP_RANGE="bytes=-0").status_code == 416

    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-y"):
        whole = api.get(url, HTTP_RANGE=ignored)
        assert whole.status_code == 200 and content(whole) == data, ignored

    stale = api.get(url, HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE='"not-the-etag"')
    assert stale.status_code == 200 and content(stale) == data
    fresh = api.get(url, HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE=part["ETag"])
    assert fresh.status_code == 206 and content(fresh) == data[:4]

    # a nested file (an image) and a binary client Accept header
    image = next((folder / "images").iterdir())
    nested = api.get(
        download_url(version, "jsonl", f"images/{image.name}"),
        HTTP_RANGE="bytes=0-7",
        HTTP_ACCEPT="application/octet-stream",
    )
    assert nested.status_code == 206 and content(nested) == image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_downloads_cannot_leave_the_export_directory(api, admin_user, exported, settings):
    version, folder = exported
    secret = Path(settings.MEDIA_ROOT) / "secret.txt"
    secret.write_text("no")
    api.force_authenticate(admin_user)
    base = download_url(version, "jsonl", "x")[:-1]
    for path in (
        "../../../secret.txt",
        "..%2F..%2F..%2Fsecret.txt",
        "images/../../../../secret.txt",
        "%2E%2E/%2E%2E/%2E%2E/secret.txt",
        str(secret),
        "images",
        "nope.txt",
    ):
        response = api.get(base + path)
        assert response.status_code == 404, (path, response.status_code)
    assert api.get(download_url(version, "parquet", "README.md")).status_code == 404, "not exported"
    assert api.get(download_url(version, "csv", "README.md")).status_code == 404


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_admins_export_and_download(api, admin_user, exported, role, request):
    version, _ = exported
    user = request.getfixturevalue(role)
    api.force_authenticate(user)
    assert api.post(exports_url(version), {"format": "parquet"}, format="json").status_code == 403
    assert api.get(exports_url(version)).status_code == 403
    assert api.get(download_url(version, "jsonl", "tuples.jsonl")).status_code == 403
    job = Job.objects.create(kind=Job.Kind.EXPORT, params={}, dedup_key="x", created_by=admin_user)
    assert api.get(reverse("curation-job", kwargs={"job_id": job.pk})).status_code == 403
    assert not Job.objects.filter(created_by=user).exists()


def test_anonymous_gets_401(api, admin_user, exported):
    version, _ = exported
    assert api.post(exports_url(version), {"format": "parquet"}, format="json").status_code == 401
    assert api.get(download_url(version, "jsonl", "tuples.jsonl")).status_code == 401


def test_the_resolver_refuses_paths_outside_the_export(admin_user, exported, settings):
    from django.http import Http404

    from curation.views_downloads import resolve_export_file

    version, folder = exported
    assert resolve_export_file(version.pk, "jsonl", "tuples.jsonl") == (folder / "tuples.jsonl").resolve()
    outside = Path(settings.MEDIA_ROOT) / "outside.txt"
    outside.write_text("no")
    (folder / "link.txt").symlink_to(outside)
    for path in (
        "../jsonl/tuples.jsonl/../../../outside.txt",
        "../../outside.txt",
        str(outside),
        "link.txt",
        "images",
        "",
    ):
        with pytest.raises(Http404):
            resolve_export_file(version.pk, "jsonl", path)

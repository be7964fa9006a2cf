"""``manage.py verify_media``: missing, mismatched and orphan media files, on the filesystem and on S3 (moto)."""

from __future__ import annotations

import io
import json
import os
import time

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from moto import mock_aws

from annotation.models import Image
from annotation.services import catalog, media_integrity
from tests.support.factories import png_bytes

pytestmark = pytest.mark.django_db

S3 = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": {
        "bucket_name": "scit2i-verify",
        "region_name": "us-east-1",
        "location": "media",
        "file_overwrite": True,
        "default_acl": None,
    },
}
ORPHAN = "images/ff/" + "f" * 64 + ".png"


def _verify(*args) -> tuple[dict, int]:
    """(the JSON report, the exit code) of ``verify_media --json *args``."""
    out = io.StringIO()
    try:
        call_command("verify_media", "--json", *args, stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return json.loads(out.getvalue()), code


def _three_images() -> list[Image]:
    return [catalog.store_image(png_bytes())[0] for _ in range(3)]


def _damage(images: list[Image]) -> None:
    """Delete the first image's file, overwrite the second's bytes, add an orphan."""
    default_storage.delete(images[0].file.name)
    default_storage.delete(images[1].file.name)
    default_storage.save(images[1].file.name, ContentFile(png_bytes()))
    default_storage.save(ORPHAN, ContentFile(b"left by a crash"))


def test_it_reports_clean_media_with_exit_code_zero():
    _three_images()
    report, code = _verify()
    assert code == 0
    assert report["clean"] is True
    assert (report["rows"], report["files"], report["missing"], report["mismatched"], report["orphans"]) == (
        3,
        3,
        0,
        0,
        0,
    )


def test_it_reports_missing_mismatched_and_orphan_files_and_changes_nothing():
    images = _three_images()
    _damage(images)
    report, code = _verify()
    assert code == 1 and report["clean"] is False
    assert (report["rows"], report["files"], report["missing"], report["mismatched"], report["orphans"]) == (
        3,
        3,
        1,
        1,
        1,
    )
    assert report["examples"] == {
        "missing": [images[0].file.name],
        "mismatched": [images[1].file.name],
        "orphan": [ORPHAN],
    }
    assert default_storage.exists(ORPHAN) and Image.objects.count() == 3

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_media", stdout=out)
    lines = out.getvalue().splitlines()
    assert f"missing: {images[0].file.name} (image {images[0].pk}: file not in storage)" in lines
    assert any(line.startswith(f"mismatched: {images[1].file.name}") for line in lines)
    assert lines[-1] == "3 image rows, 3 files under images/: 1 missing, 1 mismatched, 1 orphans (0 deleted)"


def test_it_skips_hashing_with_no_hash():
    images = _three_images()
    _damage(images)
    report, code = _verify("--no-hash")
    assert code == 1 and (report["missing"], report["mismatched"], report["orphans"]) == (1, 0, 1)


def test_it_deletes_only_orphans_older_than_the_grace_period():
    _three_images()
    default_storage.save(ORPHAN, ContentFile(b"old"))
    old = time.time() - 7200
    os.utime(default_storage.path(ORPHAN), (old, old))
    young = "images/ee/" + "e" * 64 + ".png"
    default_storage.save(young, ContentFile(b"a store in progress"))

    report, code = _verify("--delete-orphans")
    assert (report["orphans"], report["orphans_deleted"], code) == (2, 1, 1)
    assert not default_storage.exists(ORPHAN) and default_storage.exists(young)
    assert Image.objects.count() == 3

    report, code = _verify("--delete-orphans", "--grace-seconds", "0")
    assert (report["orphans"], report["orphans_deleted"], code) == (1, 1, 0)
    report, code = _verify()
    assert code == 0 and report["files"] == 3


def test_it_finds_the_same_problems_when_rows_and_files_span_many_chunks(monkeypatch):
    monkeypatch.setattr(media_integrity, "CHUNK", 2)
    images = [catalog.store_image(png_bytes())[0] for _ in range(7)]
    _damage(images)
    report, code = _verify()
    assert code == 1
    assert (report["rows"], report["files"], report["missing"], report["mismatched"], report["orphans"]) == (
        7,
        7,
        1,
        1,
        1,
    )


def test_it_checks_media_on_s3(settings, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="scit2i-verify")
        settings.STORAGES = {**settings.STORAGES, "default": S3}
        images = _three_images()
        report, code = _verify()
        assert code == 0 and (report["rows"], report["files"]) == (3, 3)
        _damage(images)
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="scit2i-verify")["Contents"])
        assert len(keys) == 3 and f"media/{ORPHAN}" in keys
        report, code = _verify("--delete-orphans", "--grace-seconds", "0")
        assert code == 1
        assert (
            report["rows"],
            report["files"],
            report["missing"],
            report["mismatched"],
            report["orphans"],
            report["orphans_deleted"],
        ) == (3, 3, 1, 1, 1, 1)
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="scit2i-verify")["Contents"])
        assert f"media/{ORPHAN}" not in keys and len(keys) == 2

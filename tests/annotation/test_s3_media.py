"""Media on S3-compatible storage through django-storages (moto stands in for the bucket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from django.core.files.storage import default_storage
from moto import mock_aws

from annotation.services import catalog
from tests.support.factories import png_bytes

S3 = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": {
        "bucket_name": "scit2i-media",
        "region_name": "us-east-1",
        "location": "media",
        "file_overwrite": False,
        "default_acl": None,
    },
}


@pytest.fixture
def bucket(settings, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="scit2i-media")
        settings.STORAGES = {**settings.STORAGES, "default": S3}
        yield boto3.client("s3", region_name="us-east-1")


def test_stored_images_land_in_the_bucket_and_read_back(db, bucket):
    image, created = catalog.store_image(png_bytes(colour=4242))
    assert created
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="scit2i-media")["Contents"]]
    assert keys == [f"media/{image.file.name}"]
    with default_storage.open(image.file.name, "rb") as fh:
        assert fh.read() == png_bytes(colour=4242)
    again, created = catalog.store_image(png_bytes(colour=4242))
    assert again.pk == image.pk and not created


def test_naming_a_bucket_switches_media_to_s3():
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['default']))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "MEDIA_S3_BUCKET": "media-bucket",
        "MEDIA_S3_ENDPOINT_URL": "http://minio:9000",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    storage = json.loads(out.stdout)
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["bucket_name"] == "media-bucket"
    assert storage["OPTIONS"]["endpoint_url"] == "http://minio:9000"

"""/api/images/: admins upload through catalog.store_image; a rejected upload stores nothing."""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from annotation.models import Image
from tests.support.factories import TupleFactory, make_image, png_bytes
from tests.support.images import bomb_png, noisy_png


@pytest.fixture
def as_admin(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def upload(client, data: bytes, name="upload.png", **fields):
    file = SimpleUploadedFile(name, data, content_type="image/png")
    return client.post("/api/images/", {"file": file, **fields}, format="multipart")


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30), (10, 120, 200)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_it_stores_an_uploaded_png_with_its_metadata(as_admin, settings):
    tuple_ = TupleFactory()
    data = png_bytes(size=(20, 10))
    response = upload(as_admin, data, kind="explicit", tuple=tuple_.id, generator="flux-dev", seed=42)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"], body["format"], body["size_bytes"]) == (20, 10, "PNG", len(data))
    assert (body["kind"], body["tuple"], body["generator"], body["seed"]) == ("explicit", tuple_.id, "flux-dev", 42)
    assert body["url"] == f"http://testserver/api/images/{body['id']}/file/"
    assert [p.read_bytes() for p in stored_files(settings)] == [data]


def test_it_stores_a_jpeg_with_defaults(as_admin):
    response = upload(as_admin, jpeg_bytes(), name="photo.jpg")
    assert response.status_code == 201
    assert (response.json()["format"], response.json()["kind"], response.json()["seed"]) == ("JPEG", "uploaded", None)


def test_it_answers_200_with_the_stored_image_for_the_same_bytes(as_admin, settings):
    data = png_bytes()
    first = upload(as_admin, data, kind="explicit")
    again = upload(as_admin, data, name="renamed.png", kind="superficial", generator="other")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the stored row, its metadata unchanged
    assert Image.objects.count() == 1
    assert len(stored_files(settings)) == 1


def _huge_side(settings):
    return bomb_png(20000, 20000)


def _many_pixels(settings):
    settings.IMAGE_MAX_PIXELS = 256
    return png_bytes(size=(32, 32))


def _too_many_bytes(settings):
    settings.IMAGE_MAX_BYTES = 100
    return png_bytes(size=(64, 64))


def _truncated(settings):
    data = noisy_png()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda s: b"GIF? no: plain text in a file named .png\n" * 8, "not an image", id="not-an-image"),
        pytest.param(_truncated, "corrupt or truncated", id="truncated-png"),
        pytest.param(_many_pixels, "1024 pixels; the limit is 256", id="pixels-over-limit"),
        pytest.param(_huge_side, "too many pixels", id="bomb-20000x20000"),
        pytest.param(_too_many_bytes, "the limit is 100", id="too-many-bytes"),
    ],
)
def test_it_refuses_a_bad_upload_and_stores_nothing(as_admin, settings, make, message):
    response = upload(as_admin, make(settings), name="evil.png")
    assert response.status_code == 400
    assert message in response.json()["file"][0]
    assert not Image.objects.exists()
    assert stored_files(settings) == []


def test_it_refuses_an_upload_without_a_file(as_admin):
    response = as_admin.post("/api/images/", {"kind": "explicit"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()


def test_it_refuses_an_unknown_kind_and_tuple(as_admin):
    response = upload(as_admin, png_bytes(), kind="painted", tuple=999999)
    assert response.status_code == 400
    assert set(response.json()) == {"kind", "tuple"}


def test_it_streams_the_bytes_to_a_reviewer(api, reviewer):
    image = make_image()
    api.force_authenticate(reviewer)
    response = api.get(f"/api/images/{image.id}/file/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == Path(image.file.path).read_bytes()


def test_it_answers_404_when_the_stored_file_is_gone(api, reviewer):
    image = make_image()
    Path(image.file.path).unlink()
    api.force_authenticate(reviewer)
    response = api.get(f"/api/images/{image.id}/file/")
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


def test_it_never_serves_images_to_annotators(api, annotator):
    image = make_image()
    api.force_authenticate(annotator)
    for path in ("/api/images/", f"/api/images/{image.id}/", f"/api/images/{image.id}/file/"):
        assert api.get(path).status_code == 403, path


def test_it_filters_images_by_tuple_and_kind(api, reviewer):
    tuple_ = TupleFactory()
    explicit = make_image(kind="explicit", tuple=tuple_)
    make_image(kind="superficial", tuple=tuple_)
    make_image(kind="explicit")
    api.force_authenticate(reviewer)
    ids = [i["id"] for i in api.get(f"/api/images/?tuple={tuple_.id}&kind=explicit").json()["results"]]
    assert ids == [explicit.id]

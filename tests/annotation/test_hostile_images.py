"""Hostile and unusual images (tests/support/hostile_images.py: not images, other formats, truncated, corrupted,
polyglots, bombs, huge dimensions, every colour mode, EXIF orientation): each one is kept, trimmed,
normalised or rejected with a message naming the problem, by annotation.imaging.check_image at both depths
and by the upload API, which stores exactly the checked bytes or leaves nothing behind."""

import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageChops

from annotation.imaging import ImageRejected, check_image
from annotation.models import AuditEvent, Image
from tests.support.hostile_images import CASES, expected_bytes

pytestmark = pytest.mark.django_db
BY_CASE = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
URL = "/api/images/"


def media_files(settings) -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_shows(case, data: bytes, stored: bytes) -> None:
    """The stored PNG has the pixels a browser shows for the input (each channel within 1 of them)."""
    expected = case.pixels(data)
    with PILImage.open(io.BytesIO(stored)) as img:
        assert img.format == "PNG" and not img.info.get("exif") and "transparency" not in img.info
        actual = img.convert(expected.mode)
    assert actual.size == expected.size
    extrema = ImageChops.difference(actual, expected).getextrema()
    high = extrema[1] if expected.mode == "L" else max(band[1] for band in extrema)
    assert high <= 1, f"pixels differ by up to {high}"


@BY_CASE
@pytest.mark.parametrize("full_decode", [True, False], ids=["upload depth", "import depth"])
def test_it_keeps_trims_normalises_or_rejects_each_input(case, full_decode):
    data = case.make()
    if case.outcome == "rejected":
        with pytest.raises(ImageRejected) as rejected:
            check_image(data, full_decode=full_decode)
        assert re.search(case.message, str(rejected.value)), str(rejected.value)
        return
    checked = check_image(data, full_decode=full_decode)
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    if case.outcome == "normalised":
        assert checked.format == "PNG" and any(re.search(case.message, c) for c in checked.changes), checked.changes
        assert_shows(case, data, checked.data)
    else:
        assert checked.data == expected_bytes(case, data)
        assert bool(checked.changes) == (case.outcome == "trimmed")
    with PILImage.open(io.BytesIO(checked.data)) as img:
        assert (img.format, img.size) == (checked.format, (checked.width, checked.height))
    again = check_image(checked.data, full_decode=full_decode)  # stored bytes pass unchanged: idempotent
    assert (again.data, again.changes) == (checked.data, ())


@BY_CASE
def test_an_upload_stores_exactly_the_checked_bytes_or_nothing(case, api, admin_user, settings):
    api.force_authenticate(admin_user)
    data = case.make()
    upload = io.BytesIO(data)
    upload.name = "upload.png"

    response = api.post(URL, {"file": upload}, format="multipart")

    if case.outcome == "rejected":
        assert response.status_code == 400, response.content
        message = response.json()["file"][0]
        assert re.search(case.message, message) or (not data and "empty" in message), message
        assert not Image.objects.exists() and media_files(settings) == []
        return
    assert response.status_code == 201, response.content
    checked = check_image(data)
    image = Image.objects.get()
    assert (image.sha256, image.format, image.size_bytes) == (checked.sha256, checked.format, len(checked.data))
    assert media_files(settings) == [f"images/{checked.sha256[:2]}/{checked.sha256}.{checked.extension}"]
    assert (Path(settings.MEDIA_ROOT) / image.file.name).read_bytes() == checked.data
    event = AuditEvent.objects.get(action="image.created")
    assert event.after.get("normalised", []) == list(checked.changes)


def test_the_same_image_uploaded_rotated_and_pre_rotated_is_one_image(api, admin_user):
    """Normalising first, hashing after: an image and its EXIF-rotated twin as a browser shows it dedupe."""
    from PIL import ImageOps

    from tests.support.hostile_images import encode, gradient, with_exif_orientation

    api.force_authenticate(admin_user)
    rotated = with_exif_orientation(gradient(), "PNG", 6)
    upright = encode(ImageOps.exif_transpose(PILImage.open(io.BytesIO(rotated))), "PNG")
    first = api.post(URL, {"file": io.BytesIO(rotated)}, format="multipart")
    second = api.post(URL, {"file": io.BytesIO(upright)}, format="multipart")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and (first.json()["width"], first.json()["height"]) == (16, 24)


@pytest.mark.parametrize("valid", [True, False], ids=["accepted", "rejected"])
def test_an_upload_spooled_to_a_temporary_file_leaves_none_behind(valid, api, admin_user, settings, tmp_path):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # every upload here goes to a temporary file
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    from tests.support.hostile_images import PNG

    api.force_authenticate(admin_user)
    data = PNG if valid else PNG[: len(PNG) // 2]
    assert len(data) > 1024
    response = api.post(URL, {"file": io.BytesIO(data)}, format="multipart")
    assert response.status_code == (201 if valid else 400), response.content
    assert list((tmp_path / "spool").iterdir()) == []
    assert Image.objects.count() == (1 if valid else 0)

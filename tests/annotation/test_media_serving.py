"""Uploaded file names never reach the filesystem (the key is the sha256), and served media cannot run:
images carry their validated type, nosniff, a sandboxing CSP and a Content-Disposition; anything else —
a row of another format, an HTML or SVG file in an export — is an octet-stream attachment."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotation.imaging import check_image
from annotation.models import Image
from curation.services import exporting
from tests.support.hostile_images import HTML, JPEG, PNG, SVG, WEBP, encode, html_text, noise
from tests.support.versions import make_version

pytestmark = pytest.mark.django_db
URL = "/api/images/"
SANDBOX = "default-src 'none'; sandbox"
BOUNDARY = "----hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(filename: bytes, data: bytes) -> bytes:
    """A multipart body written by hand: test clients strip directories from file names before sending."""
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


NAMES = {
    "parent traversal": b"../../x.png",
    "deep traversal": b"../../../../../../tmp/x.png",
    "absolute": b"/etc/cron.d/x.png",
    "windows traversal": b"..\\..\\x.png",
    "NUL byte": b"a\x00b.png",
    "300 characters": b"n" * 296 + b".png",
    "unicode": "вид-🧪-画像.png".encode(),
    "html extension": b"x.html",
    "svg extension": b"x.svg",
    "dotfile": b".htaccess",
    "double extension": b"x.php.png",
    "newline and quote": b'x"\r\n.png',
}


@pytest.mark.parametrize("filename", list(NAMES.values()), ids=list(NAMES))
def test_an_uploaded_file_name_never_reaches_the_filesystem(filename, api, admin_user, settings, tmp_path):
    api.force_authenticate(admin_user)
    response = api.generic("POST", URL, multipart(filename, PNG), content_type=MULTIPART)

    assert response.status_code == 201, response.content
    sha = check_image(PNG).sha256
    assert Image.objects.get().file.name == f"images/{sha[:2]}/{sha}.png"
    assert files_under(tmp_path) == [f"media/images/{sha[:2]}/{sha}.png"]  # nothing else, anywhere near
    assert not (tmp_path.parent / "x.png").exists() and not (tmp_path.parent.parent / "x.png").exists()
    assert not any(part in response.content for part in (b"x.png", b"x.html", b"x.svg", b"htaccess", b"nnnn"))


def test_an_html_file_uploaded_as_png_is_rejected_and_leaves_nothing(api, admin_user, tmp_path):
    api.force_authenticate(admin_user)
    response = api.generic("POST", URL, multipart(b"index.png", HTML), content_type=MULTIPART)
    assert response.status_code == 400 and "not an image" in response.json()["file"][0]
    assert files_under(tmp_path) == [] and not Image.objects.exists()


@pytest.mark.parametrize(
    ("data", "content_type", "extension"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (WEBP, "image/webp", "webp"),
        (encode(noise(), "PNG", pnginfo=html_text()), "image/png", "png"),  # HTML in a text chunk: still inert
    ],
    ids=["png", "jpeg", "webp", "png with html in a text chunk"],
)
def test_an_image_is_served_inline_with_its_validated_type_and_cannot_run(
    data, content_type, extension, api, admin_user, reviewer
):
    api.force_authenticate(admin_user)
    image_id = api.post(URL, {"file": _named(data)}, format="multipart").json()["id"]
    api.force_authenticate(reviewer)

    response = api.get(f"{URL}{image_id}/file/")

    image = Image.objects.get(pk=image_id)
    assert response.status_code == 200 and b"".join(response.streaming_content) == data
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == SANDBOX
    assert response["Content-Disposition"] == f'inline; filename="{image.sha256}.{extension}"'


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_lease_image_is_served_with_the_same_headers(side, api, annotator):
    from annotation.services import queue
    from tests.support.factories import make_pair

    make_pair("RU")
    lease = queue.next_lease(annotator)
    api.force_authenticate(annotator)

    response = api.get(f"/api/leases/{lease.id}/image/{side}/")

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == SANDBOX
    assert response["Content-Disposition"].startswith('inline; filename="')


@pytest.mark.parametrize("stored_format", ["SVG", "HTML", "GIF", ""])
def test_a_row_of_any_other_format_is_never_served_inline(stored_format, api, admin_user):
    """Rows only get PNG, JPEG or WebP through the services; one that says otherwise (an old row, a hand
    edit) is served as bytes to save, not as a document."""
    api.force_authenticate(admin_user)
    image_id = api.post(URL, {"file": _named(PNG)}, format="multipart").json()["id"]
    Image.objects.filter(pk=image_id).update(format=stored_format)

    response = api.get(f"{URL}{image_id}/file/")

    sha = Image.objects.get(pk=image_id).sha256
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="{sha}.bin"'
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == SANDBOX


def test_media_are_not_served_from_media_url(api, admin_user, client):
    api.force_authenticate(admin_user)
    api.post(URL, {"file": _named(PNG)}, format="multipart")
    client.force_login(admin_user)
    assert client.get("/media/" + Image.objects.get().file.name).status_code == 404


@pytest.fixture
def export(admin_user):
    version = make_version(admin_user, [("train", "expected"), ("train", "other")])
    folder = Path(exporting.export_version(version, "jsonl")["path"])
    (folder / "evil.html").write_bytes(HTML)
    (folder / "evil.svg").write_bytes(SVG)
    (folder / "evil.js").write_bytes(b"alert(1)")
    return version, folder


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("evil.html", "application/octet-stream"),
        ("evil.svg", "application/octet-stream"),
        ("evil.js", "application/octet-stream"),
        ("tuples.jsonl", "application/octet-stream"),
        ("MANIFEST.sha256", "application/octet-stream"),
        ("image", "image/png"),
    ],
)
@pytest.mark.parametrize("byte_range", [None, "bytes=0-9"], ids=["whole", "range"])
def test_export_downloads_are_attachments_that_cannot_run(name, content_type, byte_range, api, admin_user, export):
    version, folder = export
    if name == "image":
        name = next(p for p in folder.rglob("*.png")).relative_to(folder).as_posix()
    api.force_authenticate(admin_user)
    url = reverse("curation-export-download", kwargs={"version_id": version.pk, "export_format": "jsonl", "path": name})
    response = api.get(url, **({"HTTP_RANGE": byte_range} if byte_range else {}))

    assert response.status_code == (206 if byte_range else 200)
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{Path(name).name}"'
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == SANDBOX


def _named(data: bytes):
    import io

    upload = io.BytesIO(data)
    upload.name = "upload.png"
    return upload

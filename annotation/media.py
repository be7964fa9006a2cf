"""HTTP responses that serve stored files (images, export downloads): inert whatever the bytes are.

Every such response carries ``X-Content-Type-Options: nosniff`` (the browser keeps the declared type),
``Content-Security-Policy: default-src 'none'; sandbox`` (opened as a document, nothing runs and nothing
loads) and a ``Content-Disposition``. Images are ``inline`` only with the type of their validated format
(image/png, image/jpeg, image/webp; see annotation.imaging); a row of any other format, and every other
type that a browser could render as active content (HTML, SVG, XML, JavaScript...), is served as an
``application/octet-stream`` attachment. The file name in the header is derived from the content hash or
the export's own file, never from an upload. ``MEDIA_URL`` is not routed: media are served only here.
"""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse
from rest_framework.exceptions import NotFound

from annotation.imaging import CONTENT_TYPES

SANDBOX_POLICY = "default-src 'none'; sandbox"
OCTET_STREAM = "application/octet-stream"
# Types a download may keep: none of them is rendered as a document that could run a script.
SAFE_DOWNLOAD_TYPES = {
    *CONTENT_TYPES.values(),
    OCTET_STREAM,
    "application/json",
    "application/x-tar",
    "application/gzip",
    "application/zip",
    "text/plain",
    "text/csv",
    "text/markdown",
}


def harden(response, *, disposition: str, filename: str):
    """Mark ``response`` inert (see the module docstring); ``disposition`` is "inline" or "attachment"."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    safe_name = "".join(c for c in filename if c.isascii() and (c.isalnum() or c in "._-")) or "download"
    response["Content-Disposition"] = f'{disposition}; filename="{safe_name}"'
    return response


def safe_download_type(content_type: str | None) -> str:
    """``content_type`` if no browser would run it as a document, else ``application/octet-stream``."""
    return content_type if content_type in SAFE_DOWNLOAD_TYPES else OCTET_STREAM


def image_response(image) -> FileResponse:
    """The stored bytes of ``image`` (an annotation.models.Image): inline with its validated type, or an
    octet-stream attachment for a format the platform does not accept; 404 when the file is missing."""
    try:
        handle = default_storage.open(image.file.name, "rb")
    except FileNotFoundError:
        raise NotFound(f"The file of image {image.pk} is missing from the storage.") from None
    content_type = CONTENT_TYPES.get(image.format)
    extension = image.file.name.rsplit(".", 1)[-1] if content_type else "bin"
    response = FileResponse(handle, content_type=content_type or OCTET_STREAM)
    response["Cache-Control"] = "private, max-age=3600"
    return harden(
        response, disposition="inline" if content_type else "attachment", filename=f"{image.sha256}.{extension}"
    )

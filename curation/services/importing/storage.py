"""The image files of an import.

Image files are stored before their rows (content-addressed, see ``store_image``), so a rollback can leave
files without rows; the next import of the same bytes reuses them. An image is stored as an upload would be:
trimmed or normalised by :func:`annotation.imaging.check_image` (EXIF rotation, transparency, CMYK, 16-bit;
bytes after its end), hashed after; pass 1 notes which bytes change, pass 2 re-derives only those.
"""

from __future__ import annotations

import io
import os
import warnings

from django.conf import settings
from PIL import Image as PILImage


def image_header(data: bytes) -> tuple[int, int, str]:
    """Width, height and format from the header, as ``check_image`` reads them (no pixel decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # checked in pass 1
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size[0], img.size[1], img.format or ""  # set on every image PIL opens


def store_file(key: str, data: bytes) -> None:
    """Write image bytes under their content key unless there already, as ``catalog.store_image`` does.

    On local media the file is created directly (``O_EXCL``: an existing file is kept, as the storage's
    ``exists`` check did), which saves the storage API's per-file stat, lock and name probing: about a
    third of an import's time went to it. Other storages (S3) go through the storage API.
    """
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage, default_storage

    if isinstance(default_storage, FileSystemStorage):
        _create_local_file(default_storage.path(key), data)
    elif not default_storage.exists(key):
        saved = default_storage.save(key, ContentFile(data))
        if saved != key:  # a concurrent writer won the race for the same bytes
            default_storage.delete(saved)


def _create_local_file(path: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            return
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        if settings.FILE_UPLOAD_PERMISSIONS is not None:
            os.fchmod(fd, settings.FILE_UPLOAD_PERMISSIONS)
        handle.write(data)

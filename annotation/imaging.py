"""Validation of image bytes before anything is stored.

An upload must be a real, complete PNG, JPEG or WebP within the size limits of the settings.
Decompression bombs are refused from the header alone (no pixel is decoded before the check).

Two depths of the completeness check, same limits and formats:

* ``full_decode=True`` (uploads, one image at a time): every pixel is decoded.
* ``full_decode=False`` (dataset imports, tens of thousands of images): PNG chunk checksums are verified
  (a flipped bit anywhere fails its chunk's CRC; a cut file misses IEND), a JPEG's segments are walked to
  its end-of-image marker (a cut file has none), WebP is still decoded. A full JPEG decode is not a
  stronger integrity check than the walk except by chance: measured on a 60 KB photo-like JPEG, it
  noticed 22 of 200 random 8-byte corruptions of the entropy-coded data (libjpeg decodes most of them
  to wrong pixels without an error), and it costs ~30x the walk (1.3 ms against 0.04 ms).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; the message says why, for the uploader."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    format: str

    @property
    def extension(self) -> str:
        return ALLOWED_FORMATS[self.format]


def check_image(data: bytes, *, full_decode: bool = True) -> CheckedImage:
    if not data:
        raise ImageRejected("The file is empty.")
    if len(data) > settings.IMAGE_MAX_BYTES:
        raise ImageRejected(f"The file is {len(data)} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                _check_dimensions(width, height)
                if fmt not in ALLOWED_FORMATS:
                    raise ImageRejected(f"Format {fmt} is not accepted; use PNG, JPEG or WebP.")
                img.verify()
            if full_decode or fmt == "WEBP":
                with PILImage.open(io.BytesIO(data)) as img:
                    img.load()  # verify() does not decode; a truncated body only fails here
            elif fmt == "JPEG" and not _jpeg_reaches_its_end(data):
                raise ImageRejected("The image is corrupt or truncated (no end-of-image marker).")
        except ImageRejected:
            raise
        except (PILImage.DecompressionBombWarning, PILImage.DecompressionBombError):
            raise ImageRejected("The image has too many pixels (decompression bomb guard).") from None
        except UnidentifiedImageError:
            raise ImageRejected("The file is not an image that can be read.") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"The image is corrupt or truncated ({exc}).") from None
    return CheckedImage(data, hashlib.sha256(data).hexdigest(), width, height, fmt)


def _check_dimensions(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageRejected("The image has no pixels.")
    if max(width, height) > settings.IMAGE_MAX_SIDE:
        raise ImageRejected(f"The image is {width}x{height}; the longest side may be {settings.IMAGE_MAX_SIDE}.")
    if width * height > settings.IMAGE_MAX_PIXELS:
        raise ImageRejected(f"The image has {width * height} pixels; the limit is {settings.IMAGE_MAX_PIXELS}.")


def _jpeg_reaches_its_end(data: bytes) -> bool:
    """Whether the JPEG's segments and entropy-coded scans lead to an end-of-image marker (EOI).

    Segments are skipped by their length; a scan runs to the next marker that is neither a stuffed
    ``FF 00`` byte, a restart marker nor fill. Bytes after EOI (camera trailers) are allowed, as decoders do.
    """
    n, pos = len(data), 2
    if data[:2] != b"\xff\xd8":
        return False
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart, TEM: no length
            pos += 2
            continue
        if pos + 4 > n:
            return False
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return False
        pos += 2 + length
        if marker == 0xDA:
            pos = _end_of_scan(data, pos)
            if pos < 0:
                return False
    return False


def _end_of_scan(data: bytes, pos: int) -> int:
    """The offset of the first real marker after entropy-coded data starting at ``pos``, or -1."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return -1
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:
            pos += 1
        else:
            return pos

"""Validation of image bytes before anything is stored.

An upload must be a real, complete PNG, JPEG or WebP within the size limits of the settings.
Decompression bombs are refused from the header alone (no pixel is decoded before the check).
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


def check_image(data: bytes) -> CheckedImage:
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
            with PILImage.open(io.BytesIO(data)) as img:
                img.load()  # verify() does not decode; a truncated body only fails here
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

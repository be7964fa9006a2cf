"""A table of hostile and unusual image inputs, every one generated with Pillow (or by hand) at run time.

Each case says what annotation.imaging.check_image must do with it:

* ``kept``: stored exactly as sent;
* ``trimmed``: stored as the bytes before the image's end marker (``expected`` computes those bytes);
* ``normalised``: re-encoded as PNG; ``expected`` computes the pixels a browser would show, independently of
  the code under test (Pillow's ``ImageOps.exif_transpose``, alpha compositing by formula, etc.);
* ``rejected``: refused, with a message matching ``message``.

Used by tests/annotation/test_hostile_images.py (check_image and the upload API) and
tests/curation/test_hostile_imports.py (the dataset import).
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import ImageOps, PngImagePlugin


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    make: Callable[[], bytes]
    outcome: str  # kept, trimmed, normalised, rejected
    message: str = ""  # rejected: a regex the message must match; normalised: one the changes must match
    pixels: Callable[[bytes], PILImage.Image] | None = None  # normalised: the expected RGB/L image


def encode(img: PILImage.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(size=(96, 64), mode="RGB", seed=7) -> PILImage.Image:
    bands = len(mode) if mode != "I;16" else 2
    data = random.Random(seed).randbytes(size[0] * size[1] * bands)
    return PILImage.frombytes(mode, size, data)


def gradient(size=(24, 16)) -> PILImage.Image:
    """Every pixel distinct enough that a rotation or flip is visible."""
    img = PILImage.new("RGB", size)
    img.putdata([(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    return img


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels in a few kilobytes (rows compressed one at a
    time, the raw image never in memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def flipped(data: bytes, where: float = 0.5, count: int = 8, seed: int = 3) -> bytes:
    """``count`` single-bit flips in consecutive bytes from ``where`` (a fraction of the length)."""
    out, rnd = bytearray(data), random.Random(seed)
    start = int(len(out) * where)
    for i in range(count):
        out[start + i] ^= 1 << rnd.randrange(8)
    return bytes(out)


def with_exif_orientation(img: PILImage.Image, fmt: str, orientation: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def jpeg_with_size_in_header(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(encode(PILImage.new("RGB", (64, 48), (10, 20, 30)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("index.html", date_time=(2024, 1, 1, 0, 0, 0)), "<script>alert(1)</script>")
    return buffer.getvalue()


def text_chunk_bomb() -> bytes:
    """A tiny PNG with a zTXt chunk that inflates to 60 MB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "0" * (60 * 1024 * 1024), zip=True)
    return encode(PILImage.new("RGB", (8, 8)), "PNG", pnginfo=info)


def animated(fmt: str) -> bytes:
    frames = [PILImage.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def flattened_on_white(img: PILImage.Image) -> PILImage.Image:
    """Alpha compositing onto white by its formula, pixel by pixel (not the code under test's paste)."""
    rgba = img.convert("RGBA")
    out = PILImage.new("RGB", rgba.size)
    out.putdata(
        [tuple((c * a + 255 * (255 - a) + 127) // 255 for c in (r, g, b)) for r, g, b, a in rgba.get_flattened_data()]
    )
    return out


def transparent_rgba() -> PILImage.Image:
    img = gradient().convert("RGBA")
    img.putdata(
        [(r, g, b, (x * 11) % 256) for (r, g, b, _), x in zip(img.get_flattened_data(), range(24 * 16), strict=True)]
    )
    return img


def palette_with_transparency() -> bytes:
    img = gradient().convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=img.getpixel((0, 0)))


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
PNG = encode(noise(), "PNG")
JPEG = encode(noise(), "JPEG", quality=90)
WEBP = encode(noise(), "WEBP", quality=80)
WEBP_LOSSLESS = encode(noise(), "WEBP", lossless=True)
NOT_AN_IMAGE = "not an image that can be read"
CORRUPT = "corrupt or truncated"

CASES = [
    # not an image, whatever the file is called
    Case("html named .png", "not an image", lambda: HTML, "rejected", NOT_AN_IMAGE),
    Case("svg with script named .png", "not an image", lambda: SVG, "rejected", NOT_AN_IMAGE),
    Case("shell script named .png", "not an image", lambda: b"#!/bin/sh\nrm -rf ~\n", "rejected", NOT_AN_IMAGE),
    Case("javascript named .jpg", "not an image", lambda: b"alert(document.domain);\n" * 3, "rejected", NOT_AN_IMAGE),
    Case(
        "pdf named .png",
        "not an image",
        lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "rejected",
        NOT_AN_IMAGE,
    ),
    Case("zip named .png", "not an image", zip_file, "rejected", NOT_AN_IMAGE),
    Case(
        "png signature then html",
        "not an image",
        lambda: b"\x89PNG\r\n\x1a\n" + HTML,
        "rejected",
        f"{NOT_AN_IMAGE}|{CORRUPT}",
    ),
    Case("empty file", "not an image", lambda: b"", "rejected", "empty"),
    # other image formats
    Case("gif", "other format", lambda: encode(PILImage.new("P", (8, 8)), "GIF"), "rejected", "GIF is not accepted"),
    Case("bmp", "other format", lambda: encode(PILImage.new("RGB", (8, 8)), "BMP"), "rejected", "BMP is not accepted"),
    Case(
        "tiff", "other format", lambda: encode(PILImage.new("RGB", (8, 8)), "TIFF"), "rejected", "TIFF is not accepted"
    ),
    Case(
        "ico", "other format", lambda: encode(PILImage.new("RGB", (16, 16)), "ICO"), "rejected", "ICO is not accepted"
    ),
    Case("animated png", "other format", lambda: animated("PNG"), "rejected", r"animated \(3 frames\)"),
    Case("animated webp", "other format", lambda: animated("WEBP"), "rejected", r"animated \(3 frames\)"),
    # truncated
    Case("png cut in half", "truncated", lambda: PNG[: len(PNG) // 2], "rejected", CORRUPT),
    Case("png without its last 12 bytes (IEND)", "truncated", lambda: PNG[:-12], "rejected", CORRUPT),
    Case("jpeg cut in half", "truncated", lambda: JPEG[: len(JPEG) // 2], "rejected", CORRUPT),
    Case("jpeg without its last byte", "truncated", lambda: JPEG[:-1], "rejected", CORRUPT),
    Case("webp cut in half", "truncated", lambda: WEBP[: len(WEBP) // 2], "rejected", CORRUPT),
    # corrupted in the middle
    Case("png with 8 bit flips in the middle", "corrupted", lambda: flipped(PNG), "rejected", "checksum"),
    Case("png with 1 bit flip at 30%", "corrupted", lambda: flipped(PNG, 0.3, 1), "rejected", "checksum"),
    Case(
        "webp with its bitstream chunk tag corrupted",
        "corrupted",
        lambda: WEBP.replace(b"VP8 ", b"VP9 ", 1),
        "rejected",
        f"{NOT_AN_IMAGE}|{CORRUPT}",
    ),
    Case("jpeg with its frame header zeroed", "corrupted", lambda: _zero_frame_header(JPEG), "rejected", NOT_AN_IMAGE),
    # JPEG and WebP have no checksum: flipped bits in the compressed pixels decode to wrong pixels
    # without an error in any decoder, so they cannot be told from a real image and are stored as sent.
    Case("jpeg with 8 bit flips in the middle (undetectable)", "corrupted", lambda: flipped(JPEG), "kept"),
    Case("lossy webp with 8 bit flips in the middle (undetectable)", "corrupted", lambda: flipped(WEBP), "kept"),
    Case(
        "lossless webp with 8 bit flips in the middle (undetectable)",
        "corrupted",
        lambda: flipped(WEBP_LOSSLESS),
        "kept",
    ),
    # polyglots: a real image with HTML/script after it, or inside a text chunk
    Case("png followed by html", "polyglot", lambda: PNG + HTML, "trimmed", "bytes after the end"),
    Case("jpeg followed by html", "polyglot", lambda: JPEG + HTML, "trimmed", "bytes after the end"),
    Case(
        "webp followed by a script",
        "polyglot",
        lambda: WEBP + b"<script>alert(1)</script>",
        "trimmed",
        "bytes after the end",
    ),
    Case(
        "jpeg followed by a zip (camera trailer style)",
        "polyglot",
        lambda: JPEG + zip_file(),
        "trimmed",
        "bytes after the end",
    ),
    Case("png with html in a text chunk", "polyglot", lambda: encode(noise(), "PNG", pnginfo=html_text()), "kept"),
    # decompression bombs and huge dimensions
    Case(
        "png bomb 20000x20000 (400 MP) in kilobytes",
        "bomb",
        lambda: bomb_png(20000, 20000),
        "rejected",
        "too many pixels|longest side",
    ),
    Case(
        "png bomb 8000x6000 (48 MP, each side allowed)",
        "bomb",
        lambda: bomb_png(8000, 6000),
        "rejected",
        "48000000 pixels; the limit",
    ),
    Case("png with a 60 MB zTXt chunk", "bomb", text_chunk_bomb, "rejected", "Decompressed data too large"),
    Case(
        "jpeg header claiming 60000x60000",
        "bomb",
        lambda: jpeg_with_size_in_header(60000, 60000),
        "rejected",
        "too many pixels",
    ),
    Case(
        "png 9000x1",
        "huge dimensions",
        lambda: encode(PILImage.new("RGB", (9000, 1)), "PNG"),
        "rejected",
        "9000x1; the longest side may be 8192",
    ),
    Case(
        "jpeg header claiming 8200x10",
        "huge dimensions",
        lambda: jpeg_with_size_in_header(8200, 10),
        "rejected",
        "8200x10; the longest side",
    ),
    # modes
    Case("rgb png", "mode", lambda: encode(gradient(), "PNG"), "kept"),
    Case("rgb jpeg", "mode", lambda: encode(gradient(), "JPEG"), "kept"),
    Case("rgb webp", "mode", lambda: encode(gradient(), "WEBP"), "kept"),
    Case("greyscale (L) png", "mode", lambda: encode(gradient().convert("L"), "PNG"), "kept"),
    Case("greyscale (L) jpeg", "mode", lambda: encode(gradient().convert("L"), "JPEG"), "kept"),
    Case("1-bit png", "mode", lambda: encode(gradient().convert("1"), "PNG"), "kept"),
    Case("palette (P) png", "mode", lambda: encode(gradient().convert("P"), "PNG"), "kept"),
    Case("opaque rgba png", "mode", lambda: encode(gradient().convert("RGBA"), "PNG"), "kept"),
    Case(
        "rgba png with transparency",
        "mode",
        lambda: encode(transparent_rgba(), "PNG"),
        "normalised",
        r"transparency \(RGBA\) composited onto white",
        lambda data: flattened_on_white(transparent_rgba()),
    ),
    Case(
        "la png with transparency",
        "mode",
        lambda: encode(transparent_rgba().convert("LA"), "PNG"),
        "normalised",
        r"transparency \(LA\)",
        lambda data: flattened_on_white(transparent_rgba().convert("LA")),
    ),
    Case(
        "rgba webp with transparency",
        "mode",
        lambda: encode(transparent_rgba(), "WEBP", lossless=True),
        "normalised",
        r"transparency \(RGBA\)",
        lambda data: flattened_on_white(transparent_rgba()),
    ),
    Case(
        "palette png with a transparent entry",
        "mode",
        palette_with_transparency,
        "normalised",
        r"transparency \(P\)",
        lambda data: flattened_on_white(PILImage.open(io.BytesIO(data))),
    ),
    Case(
        "cmyk jpeg",
        "mode",
        lambda: encode(gradient().convert("CMYK"), "JPEG", quality=95),
        "normalised",
        "CMYK converted to RGB",
        lambda data: PILImage.open(io.BytesIO(data)).convert("RGB"),
    ),
    Case(
        "16-bit greyscale (I;16) png",
        "mode",
        lambda: encode(_sixteen_bit(), "PNG"),
        "normalised",
        r"16-bit greyscale \(I;16\) scaled to 8 bits",
        lambda data: PILImage.frombytes("L", (24, 16), bytes(v * 255 // 65535 for v in _sixteen_bit_values())),
    ),
    # EXIF orientation
    *[
        Case(
            f"jpeg with exif orientation {o}",
            "exif orientation",
            lambda o=o: with_exif_orientation(gradient(), "JPEG", o),
            "normalised",
            f"EXIF orientation {o} applied",
            lambda data: ImageOps.exif_transpose(PILImage.open(io.BytesIO(data))).convert("RGB"),
        )
        for o in (3, 6, 8)
    ],
    Case(
        "png with exif orientation 5",
        "exif orientation",
        lambda: with_exif_orientation(gradient(), "PNG", 5),
        "normalised",
        "EXIF orientation 5 applied",
        lambda data: ImageOps.exif_transpose(PILImage.open(io.BytesIO(data))).convert("RGB"),
    ),
    Case(
        "jpeg with exif orientation 1", "exif orientation", lambda: with_exif_orientation(gradient(), "JPEG", 1), "kept"
    ),
    Case(
        "jpeg with an invalid exif orientation (9)",
        "exif orientation",
        lambda: with_exif_orientation(gradient(), "JPEG", 9),
        "kept",
    ),
]


def _zero_frame_header(jpeg: bytes) -> bytes:
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    data[sof + 2 : sof + 12] = bytes(10)
    return bytes(data)


def html_text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", HTML.decode())
    return info


def _sixteen_bit_values() -> list[int]:
    return [(i * 2731) % 65536 for i in range(24 * 16)]


def _sixteen_bit() -> PILImage.Image:
    return PILImage.frombytes("I;16", (24, 16), b"".join(v.to_bytes(2, "little") for v in _sixteen_bit_values()))


def expected_bytes(case: Case, data: bytes) -> bytes | None:
    """What must be stored for a kept or trimmed case (None for the others)."""
    if case.outcome == "kept":
        return data
    if case.outcome == "trimmed":
        for tail in (HTML, b"<script>alert(1)</script>", zip_file()):
            if data.endswith(tail):
                return data[: -len(tail)]
    return None

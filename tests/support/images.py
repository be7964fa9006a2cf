"""Image bytes built at run time: a decompression-bomb PNG written without Pillow, and a noisy PNG
large enough that cutting it in half truncates its pixel data."""

import io
import struct
import zlib

from PIL import Image as PILImage


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels, built without Pillow.

    Rows are compressed one at a time, so even 20000 x 20000 (400 megapixels) costs a few
    kilobytes of output and never holds the raw image in memory.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte "none", then the packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def noisy_png(size=(64, 64)) -> bytes:
    """A PNG whose pixel data is large enough that cutting it in half truncates the IDAT."""
    buf = io.BytesIO()
    PILImage.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256)).save(buf, "PNG")
    return buf.getvalue()

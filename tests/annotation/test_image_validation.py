"""annotation.imaging.check_image: what an upload must be before anything is stored."""

import io

import pytest
from PIL import Image as PILImage

from annotation.imaging import ImageRejected, check_image
from tests.support.factories import png_bytes
from tests.support.images import bomb_png, noisy_png


def encoded(fmt: str, size=(32, 24), mode="RGB") -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, size, (200, 30, 60) if mode == "RGB" else 0).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "extension"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_it_accepts_png_jpeg_and_webp(fmt, extension):
    checked = check_image(encoded(fmt))
    assert (checked.format, checked.width, checked.height, checked.extension) == (fmt, 32, 24, extension)
    assert len(checked.sha256) == 64


def test_it_hashes_the_exact_bytes():
    data = png_bytes()
    assert check_image(data).sha256 == check_image(data).sha256
    assert check_image(data).sha256 != check_image(png_bytes()).sha256


def test_it_rejects_empty_bytes():
    with pytest.raises(ImageRejected, match="empty"):
        check_image(b"")


def test_it_rejects_a_text_file():
    with pytest.raises(ImageRejected, match="not an image"):
        check_image(b"definitely not a picture, although the file was called cat.png\n" * 4)


def test_it_rejects_a_format_it_does_not_accept():
    with pytest.raises(ImageRejected, match="GIF is not accepted"):
        check_image(encoded("GIF", mode="P"))


DEPTHS = pytest.mark.parametrize("full_decode", [True, False], ids=["full decode", "import check"])


def noisy_jpeg(size=(128, 96), **options) -> bytes:
    buf = io.BytesIO()
    PILImage.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256)).save(buf, "JPEG", **options)
    return buf.getvalue()


@DEPTHS
def test_it_rejects_a_truncated_png(full_decode):
    data = noisy_png()
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        check_image(data[: len(data) // 2], full_decode=full_decode)


@DEPTHS
def test_it_rejects_a_png_with_a_flipped_bit_in_its_pixel_data(full_decode):
    data = bytearray(noisy_png())
    data[len(data) // 2] ^= 0x10
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        check_image(bytes(data), full_decode=full_decode)


@DEPTHS
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_it_rejects_a_truncated_jpeg(full_decode, cut):
    data = noisy_jpeg(size=(256, 256))
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        check_image(data[: int(len(data) * cut)], full_decode=full_decode)


@DEPTHS
@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 2}, {"quality": 100}],
    ids=["baseline", "progressive", "restart markers", "quality 100"],
)
def test_it_accepts_every_complete_jpeg_encoding(full_decode, options):
    data = noisy_jpeg(**options)
    assert check_image(data, full_decode=full_decode).format == "JPEG"


@DEPTHS
def test_it_accepts_bytes_after_the_end_of_a_jpeg_as_decoders_do(full_decode):
    assert check_image(noisy_jpeg() + b"camera trailer", full_decode=full_decode).format == "JPEG"


def test_it_rejects_more_bytes_than_the_limit(settings):
    settings.IMAGE_MAX_BYTES = 100
    with pytest.raises(ImageRejected, match="the limit is 100"):
        check_image(png_bytes(size=(64, 64)))


def test_it_rejects_more_pixels_than_the_limit(settings):
    settings.IMAGE_MAX_PIXELS = 256
    with pytest.raises(ImageRejected, match="1024 pixels; the limit is 256"):
        check_image(png_bytes(size=(32, 32)))


def test_it_rejects_a_side_longer_than_the_limit(settings):
    settings.IMAGE_MAX_SIDE = 16
    with pytest.raises(ImageRejected, match="longest side may be 16"):
        check_image(png_bytes(size=(17, 4)))


def test_it_rejects_a_real_bomb_under_the_side_limit_by_its_pixel_count():
    """8000 x 6000 = 48 megapixels: each side is allowed, the product is not (limit 40 M)."""
    data = bomb_png(8000, 6000)
    assert len(data) < 100_000
    with pytest.raises(ImageRejected, match="48000000 pixels"):
        check_image(data)


def test_it_rejects_a_20000_by_20000_bomb_from_its_header():
    """400 megapixels in a few kilobytes; Pillow's own bomb guard fires before ours can."""
    data = bomb_png(20000, 20000)
    assert len(data) < 200_000
    with pytest.raises(ImageRejected, match="too many pixels|longest side"):
        check_image(data)


def test_it_accepts_the_bomb_builder_output_when_small():
    """The bomb builder writes valid PNGs: a small one passes, so the rejections above are about size."""
    assert check_image(bomb_png(64, 48)).format == "PNG"

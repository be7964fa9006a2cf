"""Seed one tree's database for ``bench/annotate_keys.py``: run in a subprocess with that tree's Django
(``PYTHONPATH`` = the tree, then this folder), through that tree's own services, so a tree whose models differ
(new columns, new defaults) is seeded correctly.

Arguments: ``PAIRS ANNOTATORS PASSWORD``. Creates ``PAIRS`` chemistry pairs (task RU, k = 3) whose two images are
real 384 × 384 PNG files of noise (about 150 KB each, like a compressed generator output), and ``ANNOTATORS``
chemistry annotators ``bench-keys-0``… with ``PASSWORD``. Idempotent for the annotators; pairs are added.
"""

import io
import sys

import django

django.setup()

from PIL import Image as PILImage  # noqa: E402

from annotation.models import Image, PromptTuple, Task  # noqa: E402
from annotation.services import catalog, people  # noqa: E402


def png(n: int) -> bytes:
    img = PILImage.effect_noise((384, 384), 40 + n % 50).convert("RGB")
    img.putpixel((0, 0), (n % 256, (n >> 8) % 256, (n >> 16) % 256))  # distinct bytes, no sha256 dedup
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def main(pairs: int, annotators: int, password: str) -> None:
    task = Task.objects.get(code="RU")
    start = PromptTuple.objects.count()
    for i in range(start, start + pairs):
        tup = PromptTuple.objects.create(
            implicit_prompt=f"Key bench {i}: an iron nail left outside in the rain for weeks.",
            explicit_prompt=f"A rusty brown nail {i}.",
            superficial_prompt=f"A shiny grey nail {i}.",
            subject="nail",
            task=task,
        )
        correct, _ = catalog.store_image(png(2 * i), kind=Image.Kind.EXPLICIT, tuple=tup)
        wrong, _ = catalog.store_image(png(2 * i + 1), kind=Image.Kind.SUPERFICIAL, tuple=tup)
        catalog.create_pair(tup, correct, wrong, k=3)
    for i in range(annotators):
        people.ensure_user(f"bench-keys-{i}", role="annotator", password=password, disciplines=["chemistry"])


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

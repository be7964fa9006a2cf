"""factory_boy factories that build real rows through the services (real image bytes on disk)."""

from __future__ import annotations

import io
import itertools

import factory
from PIL import Image as PILImage

from annotation.models import Image, Pair, PromptTuple, Task
from annotation.services import catalog, people

_colour = itertools.count(1)


def png_bytes(size=(16, 16), colour=None) -> bytes:
    """A distinct valid PNG each call (distinct colour), so sha256 dedup never merges them."""
    n = next(_colour) if colour is None else colour
    img = PILImage.new("RGB", size, ((n * 37) % 256, (n * 91) % 256, (n // 256 * 53 + n * 7) % 256))
    img.putpixel((0, 0), (n % 256, (n >> 8) % 256, (n >> 16) % 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_user(username: str, role: str = "annotator", *, disciplines=None, tasks=None, password="pw-for-tests-1"):
    user, _ = people.ensure_user(username, role=role, password=password, disciplines=disciplines, tasks=tasks)
    return user


class TupleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptTuple

    implicit_prompt = factory.Sequence(lambda n: f"A metal nail left outside in the rain for weeks, number {n}.")
    explicit_prompt = factory.Sequence(lambda n: f"A rusty brown nail {n}.")
    superficial_prompt = factory.Sequence(lambda n: f"A shiny grey nail {n}.")
    subject = "nail"
    task = factory.LazyFunction(lambda: Task.objects.get(code="RU"))


def make_image(kind=Image.Kind.UPLOADED, tuple=None) -> Image:
    image, _ = catalog.store_image(png_bytes(), kind=kind, tuple=tuple)
    return image


def make_pair(task_code: str = "RU", k: int = 3, tuple: PromptTuple | None = None) -> Pair:
    tuple = tuple or TupleFactory(task=Task.objects.get(code=task_code))
    correct = make_image(Image.Kind.EXPLICIT, tuple)
    wrong = make_image(Image.Kind.SUPERFICIAL, tuple)
    pair, _ = catalog.create_pair(tuple, correct, wrong, k=k)
    return pair

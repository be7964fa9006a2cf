"""Datasets of tuples for scoring, training and evaluation.

A :class:`TupleRecord` is one Science-T2I tuple with one correct and one wrong image. Readers
(:func:`read_jsonl`, :func:`read_parquet_dir`) turn files into records; images load lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

# The seeded taxonomy (code -> discipline, ST/CT); mirrors annotation/taxonomy.py without Django.
TASKS: dict[str, tuple[str, str]] = {
    "GR": ("physics", "CT"), "SO": ("physics", "CT"), "ME": ("physics", "CT"), "AB": ("physics", "ST"),
    "BU": ("physics", "ST"), "DI": ("physics", "ST"), "EL": ("physics", "CT"), "EV": ("physics", "CT"),
    "LI": ("physics", "CT"), "RU": ("chemistry", "CT"), "IM": ("chemistry", "ST"), "FR": ("chemistry", "ST"),
    "LR": ("biology", "CT"), "WR": ("biology", "CT"), "SC": ("biology", "ST"), "RI": ("biology", "CT"),
}


@dataclass
class TupleRecord:
    implicit_prompt: str
    explicit_prompt: str
    superficial_prompt: str
    correct_image: Callable[[], Image.Image] | Image.Image
    wrong_image: Callable[[], Image.Image] | Image.Image
    task: str = ""
    discipline: str = ""
    kind: str = ""  # ST or CT
    subject: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task and self.task in TASKS:
            discipline, kind = TASKS[self.task]
            self.discipline = self.discipline or discipline
            self.kind = self.kind or kind

    def images(self) -> tuple[Image.Image, Image.Image]:
        """(correct, wrong), loaded now."""
        return _load(self.correct_image), _load(self.wrong_image)


def _load(image) -> Image.Image:
    return image() if callable(image) else image

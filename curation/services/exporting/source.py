"""Reading a version's members in bounded batches (:class:`Source`, :class:`Row`), their images from
``default_storage``, and the counts every format reports.

:func:`_load_images` calls :func:`read_stored_file` through this module's globals: a test that patches it patches
``curation.services.exporting.source.read_stored_file``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage

from curation.models import DatasetVersion, Label, VersionMember
from curation.services.exporting.base import DECIDED, ROW_OVERHEAD, Progress
from curation.services.exporting.hashing import Hasher

# --- reading members in bounded batches ------------------------------------------------------------

_FIELDS = {
    "pair_id": "pair_id",
    "tuple_id": "pair__tuple_id",
    "implicit_prompt": "pair__tuple__implicit_prompt",
    "explicit_prompt": "pair__tuple__explicit_prompt",
    "superficial_prompt": "pair__tuple__superficial_prompt",
    "implicit_paraphrases": "pair__tuple__implicit_paraphrases",
    "explicit_paraphrases": "pair__tuple__explicit_paraphrases",
    "superficial_paraphrases": "pair__tuple__superficial_paraphrases",
    "scene_scoring": "pair__tuple__scene_scoring",
    "real_scoring": "pair__tuple__real_scoring",
    "subject": "pair__tuple__subject",
    "scene": "pair__tuple__scene",
    "task": "pair__tuple__task__code",
    "task_name": "pair__tuple__task__name",
    "discipline": "pair__tuple__task__discipline__slug",
    "label": "label",
    "consensus": "outcome",
    "agreement": "agreement",
    "n_judgements": "n_judgements",
    "split": "split",
    "expected_file": "pair__image_correct__file",
    "expected_sha256": "pair__image_correct__sha256",
    "expected_format": "pair__image_correct__format",
    "other_file": "pair__image_wrong__file",
    "other_sha256": "pair__image_wrong__sha256",
    "other_format": "pair__image_wrong__format",
}


@dataclass
class Row:
    """One member with both images' bytes; ``correct``/``wrong`` follow the label (swapped for ``other``)."""

    values: dict
    expected: bytes
    other: bytes

    @property
    def swapped(self) -> bool:
        return self.values["label"] == Label.OTHER

    def image(self, which: str) -> tuple[bytes, str, str]:
        """(bytes, sha256, extension) of the ``correct``/``wrong`` (by label) or ``expected``/``other`` image."""
        if which in ("correct", "wrong"):
            which = (
                ("other" if self.swapped else "expected")
                if which == "correct"
                else ("expected" if self.swapped else "other")
            )
        data = self.expected if which == "expected" else self.other
        return data, self.values[f"{which}_sha256"], _extension(self.values[f"{which}_format"])

    def prompts(self, which: str) -> list[str]:
        """Every wording of the ``implicit``/``explicit``/``superficial`` prompt: the prompt, then its
        paraphrases (as :meth:`annotation.models.PromptTuple.prompts`)."""
        first = self.values[f"{which}_prompt"] or ""
        more = self.values.get(f"{which}_paraphrases") or []
        return ([first] if first else []) + [p for p in more if p != first]

    @property
    def size(self) -> int:
        text = sum(len(self.values[k] or "") for k in ("implicit_prompt", "explicit_prompt", "superficial_prompt"))
        return len(self.expected) + len(self.other) + 4 * text + ROW_OVERHEAD


def _extension(image_format: str) -> str:
    ext = (image_format or "bin").lower()
    return {"jpeg": "jpg", "tiff": "tif"}.get(ext, ext)


def read_stored_file(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _load_images(batch: list[dict]) -> list[Row]:
    return [
        Row(values, read_stored_file(values["expected_file"]), read_stored_file(values["other_file"]))
        for values in batch
    ]


class Source:
    """The version's members, split by split, as batches of :class:`Row` (images read per batch).

    The images of the next batch are read on a background thread while the current one is written
    (reading releases the GIL), so at most two batches are in memory. Only ``read_stored_file`` (storage) runs there;
    the database is read on the caller's thread."""

    def __init__(self, version: DatasetVersion, batch_size: int, progress: Progress, hasher: Hasher | None = None):
        self.version, self.batch_size, self._progress = version, batch_size, progress
        self.total = VersionMember.objects.filter(version=version).count()
        self.done = 0
        self.hasher = hasher

    def members(self, split: str, labels=None):
        rows = VersionMember.objects.filter(version=self.version, split=split)
        if labels is not None:
            rows = rows.filter(label__in=list(labels))
        return rows

    def label_counts(self) -> dict:
        counts: dict[str, dict[str, int]] = {}
        for split, label in VersionMember.objects.filter(version=self.version).values_list("split", "label"):
            counts.setdefault(split, {}).setdefault(label, 0)
            counts[split][label] += 1
        return counts

    def batches(self, split: str, labels=None, *, by_tuple: bool = False) -> Iterator[list[Row]]:
        """Batches of rows in pair order, or ``by_tuple`` in tuple then pair order (a tuple's pairs follow
        one another, possibly across two batches)."""
        from concurrent.futures import ThreadPoolExecutor

        order = ("pair__tuple_id", "pair_id") if by_tuple else ("pair_id",)
        query = self.members(split, labels).order_by(*order).values(*_FIELDS.values())
        with ThreadPoolExecutor(1, thread_name_prefix="export-read") as reader:
            pending = None
            for batch in self._value_batches(query):
                loading = reader.submit(_load_images, batch)
                if pending is not None:
                    yield self._loaded(pending.result())
                pending = loading
            if pending is not None:
                yield self._loaded(pending.result())

    def _value_batches(self, query) -> Iterator[list[dict]]:
        batch: list[dict] = []
        for values in query.iterator(chunk_size=self.batch_size):
            batch.append({key: values[field] for key, field in _FIELDS.items()})
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _loaded(self, rows: list[Row]) -> list[Row]:
        self.done += len(rows)
        self._progress(min(0.99, self.done / max(1, self.total)), f"{self.done} of {self.total} members")
        return rows

    def skip(self, n: int) -> None:
        """Members passed over (labels not exported) still count as progress."""
        self.done += n


def common_columns(row: Row) -> dict:
    v = row.values
    return {
        "tuple_id": v["tuple_id"],
        "pair_id": v["pair_id"],
        "task": v["task"] or "",
        "discipline": v["discipline"] or "",
        "label": v["label"],
        "consensus": v["consensus"],
        "agreement": v["agreement"],
        "n_judgements": v["n_judgements"],
    }


def tuple_columns(row: Row) -> dict:
    """The tuple's own fields beyond the three prompts: every wording, scene, subject and rubrics."""
    v = row.values
    return {
        "implicit_prompts": row.prompts("implicit"),
        "explicit_prompts": row.prompts("explicit"),
        "superficial_prompts": row.prompts("superficial"),
        "scene": v["scene"] or "",
        "subject": v["subject"] or "",
        "scene_scoring": v["scene_scoring"] or "",
        "real_scoring": v["real_scoring"] or "",
    }


def counts_skeleton() -> dict:
    return {"rows": 0, "splits": {}, "tasks": {}, "labels": {}, "excluded": {}, "files": {}}


def count_row(counts: dict, row: Row) -> None:
    v = row.values
    counts["rows"] += 1
    counts["splits"][v["split"]] = counts["splits"].get(v["split"], 0) + 1
    per_task = counts["tasks"].setdefault(v["task"] or "", {})
    per_task[v["split"]] = per_task.get(v["split"], 0) + 1
    counts["labels"][v["label"]] = counts["labels"].get(v["label"], 0) + 1


def count_excluded(source: Source, counts: dict, split: str) -> None:
    n = source.members(split).exclude(label__in=DECIDED).count()
    if n:
        counts["excluded"][split] = n
        source.skip(n)

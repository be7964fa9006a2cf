"""Pass 2: the rows written a batch at a time, and :class:`Writer`, which writes each row through the
catalogue services (dry runs; a real run uses :class:`.bulk.BulkWriter`, which stores, counts and audits
the same).

**Idempotent.** Tuples are keyed by normalised implicit prompt + task, images by sha256, pairs by (tuple,
correct, wrong): importing a file again creates nothing and counts everything as skipped. Within one run a
tuple is upserted once (its first row wins), so the counts are the same on every run.

A dry run takes pass 1 and then counts, read-only, what would be created (an existing tuple counts as
skipped even where a real run would fill in an empty field of it), and what would become of each decision:
``recorded`` for a new pair; for a stored one, what
:func:`curation.services.consensus.record_imported_decision` answers inside a savepoint rolled back at
once (``recorded``, ``unchanged``, or ``kept``: the pair's own decision here, gold included, wins).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import overload

from django.db import transaction

from annotation.models import Image, Pair, PromptTuple
from annotation.services import catalog
from curation.services.importing.base import DatasetImportReport, ImportRefused
from curation.services.importing.checking import row_chunks
from curation.services.importing.reading import image_bytes
from curation.services.importing.records import Item, Row


def write_batches(rows: Iterator[Row], batch_size: int, writer, *, atomic: bool = True) -> Iterator[int]:
    """Write ``rows`` ``batch_size`` at a time (each batch in its own transaction when ``atomic``);
    yield the number of rows done after each batch."""
    done = 0
    for batch in row_chunks(rows, batch_size):
        done += _write_batch(batch, writer, atomic)
        yield done


def _write_batch(batch: list[Row], writer, atomic: bool) -> int:
    if atomic:
        with transaction.atomic():
            writer.write_batch(batch)
    else:
        writer.write_batch(batch)
    return len(batch)


class Writer:
    """Writes rows through the catalogue services and counts what happened, each thing once per run."""

    def __init__(self, report: DatasetImportReport, *, dry_run: bool, normalised: dict | None = None):
        self.report, self.dry_run = report, dry_run
        self.normalised = normalised or {}  # pass 1's sha256 read → sha256 stored (trimmed or normalised)
        self.tuples: dict[tuple, PromptTuple | None] = {}
        self.images: dict[str, Image | None] = {}
        self.pairs: set[tuple] = set()

    def write_batch(self, batch: list[Row]) -> None:
        for row in batch:
            self.write(row)

    def close(self) -> None:
        pass

    def write(self, row: Row) -> None:
        if row.error is not None:  # pass 1 saw none; the input changed under us
            raise ImportRefused(f"{row.file} row {row.number} changed since it was validated: {row.error}")
        for item in row.items:
            tuple_ = self._tuple(item)
            if item.explicit is None:
                continue
            correct = self._image(image_bytes(item.explicit), Image.Kind.EXPLICIT, tuple_)
            wrong = self._image(image_bytes(item.superficial), Image.Kind.SUPERFICIAL, tuple_)
            self._pair(item, tuple_, correct, wrong)

    def _tuple(self, item: Item) -> PromptTuple | None:
        if item.key in self.tuples:
            return self.tuples[item.key]
        if self.dry_run:
            found = self._find_tuple(item)
            self.report.tuples["skipped" if found else "created"] += 1
            self.tuples[item.key] = found
            return found
        fields = item.fields
        if item.create_only and self._find_tuple(item) is not None:
            fields = {**fields, **{name: None if name == "scene" else "" for name in item.create_only}}
        tuple_, outcome = catalog.upsert_tuple(**fields)
        self.report.tuples[outcome] += 1
        self.tuples[item.key] = tuple_
        return tuple_

    @staticmethod
    def _find_tuple(item: Item) -> PromptTuple | None:
        matches = PromptTuple.objects.filter(implicit_normalised=item.key[0])
        task_id = item.key[1]
        if task_id is None:
            return matches.filter(task__isnull=True).first()
        return matches.filter(task_id=task_id).first() or matches.filter(task__isnull=True).first()

    def _image(self, data: bytes, kind: str, tuple_: PromptTuple | None):
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        sha = self.normalised.get(sha, sha) if self.dry_run else sha  # a real run stores through store_image
        if sha in self.images:
            return self.images[sha] if not self.dry_run else sha
        if self.dry_run:
            exists = Image.objects.filter(sha256=sha).exists()
            self.report.images["skipped" if exists else "created"] += 1
            self.images[sha] = None
            return sha
        image, created = catalog.store_image(data, kind=kind, tuple=tuple_)
        self.report.images["created" if created else "skipped"] += 1
        self.images[sha] = image
        return image

    def _pair(self, item: Item, tuple_, correct, wrong) -> None:
        label = item.label
        if self.dry_run:
            key = (item.key, correct, wrong)
            if key in self.pairs:
                return
            self.pairs.add(key)
            pair = None
            if tuple_ is not None:
                pair = Pair.objects.filter(
                    tuple=tuple_, image_correct__sha256=correct, image_wrong__sha256=wrong
                ).first()
                if pair is None:
                    pair = Pair.objects.filter(
                        tuple=tuple_, image_correct__sha256=wrong, image_wrong__sha256=correct, consensus__label="other"
                    ).first()
                    label = flipped(label)
            self.report.pairs["skipped" if pair else "created"] += 1
            if label is not None:
                if pair is None:
                    self.report.decisions["recorded"] += 1
                else:
                    self._decide(pair, label, item.decision)
            return
        key = (tuple_.pk, correct.pk, wrong.pk)
        if key in self.pairs:
            return
        self.pairs.add(key)
        pair = Pair.objects.filter(
            tuple=tuple_, image_correct=wrong, image_wrong=correct, consensus__label="other"
        ).first()
        if pair is not None:
            self.report.pairs["skipped"] += 1  # stored the other way round, and the experts reversed it
            label = flipped(label)
        else:
            pair, created = catalog.create_pair(tuple_, correct, wrong)
            self.report.pairs["created" if created else "skipped"] += 1
        if label is not None:
            self._decide(pair, label, item.decision)

    def _decide(self, pair: Pair, label: str, provenance: dict) -> None:
        """Record the imported decision (a dry run: inside a savepoint rolled back at once) and count it."""
        from curation.services.consensus import record_imported_decision

        what = settled(decision_states().filter(pk=pair.pk).first(), label, provenance)
        if what is None and self.dry_run:
            with transaction.atomic():
                _, what = record_imported_decision(pair, label, provenance)
                transaction.set_rollback(True)
        elif what is None:
            _, what = record_imported_decision(pair, label, provenance)
        self.report.decisions["kept" if what == "gold" else what] += 1


def decision_states():
    """What :func:`settled` reads of stored pairs, one named row per pair."""
    return Pair.objects.values_list(
        "pk",
        "is_gold",
        "judgement_count",
        "status",
        "consensus__outcome",
        "consensus__label",
        "consensus__provenance",
        "consensus__n_judgements",
        "consensus__counts",
        "consensus__agreement",
        named=True,
    )


def settled(state, label: str, provenance: dict) -> str | None:
    """What ``record_imported_decision`` would answer for a stored pair *without writing anything*, read from
    its row (:func:`decision_states`): ``"kept"`` for a gold pair or one with a decision of its own here,
    ``"unchanged"`` when the same imported decision is stored on a closed pair without judgements; None when
    it may write (call it). Re-importing a dataset otherwise locks and reads every pair one at a time."""
    if state is None:
        return None
    if state.is_gold or state.consensus__outcome not in (None, "pending", "imported"):
        return "kept"
    if (
        state.consensus__outcome == "imported"
        and state.consensus__label == label
        and state.consensus__provenance == provenance
        and state.judgement_count == 0
        and state.consensus__n_judgements == 0
        and state.consensus__agreement is None
        and not any((state.consensus__counts or {}).values())
        and state.status != Pair.Status.OPEN
    ):
        return "unchanged"
    return None


@overload
def flipped(label: str) -> str: ...
@overload
def flipped(label: None) -> None: ...
def flipped(label: str | None) -> str | None:
    """A label stated for the pair with the roles swapped (expected ↔ other; both and neither stay)."""
    if label is None:
        return None
    return {"expected": "other", "other": "expected"}.get(label, label)

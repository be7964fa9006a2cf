"""Pass 2 of a real run: ``batch_size`` rows at a time with a few set-based statements per batch (``COPY``
on PostgreSQL) instead of the per-row services; what is stored, counted and audited is the same (see
:class:`BulkWriter`), and bytes pass 1 validated are not decoded again.

:class:`BulkWriter` calls :func:`insert_rows` through this module's globals: a test that patches it patches
``curation.services.importing.bulk.insert_rows``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings

from annotation.imaging import ALLOWED_FORMATS, check_image
from annotation.models import Image, Pair, PromptTuple, normalise_prompt
from annotation.services import catalog
from curation.models import Consensus, Label
from curation.services.consensus import record_imported_decision
from curation.services.importing.base import DatasetImportReport, ImportRefused
from curation.services.importing.checking import pool_size
from curation.services.importing.reading import image_bytes
from curation.services.importing.records import Item, Row
from curation.services.importing.storage import image_header, store_file
from curation.services.importing.writing import Writer, decision_states, flipped, settled

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


class BulkWriter:
    """Writes rows a batch at a time with a few set-based queries per batch; what it stores and counts, and
    the audit events it records, are what writing each row through the catalogue services would give
    (``Writer`` in :mod:`.writing`, which dry runs still use):

    * **tuples** whose normalised prompt is not stored are inserted together, as ``catalog.upsert_tuple``
      would create them; any other (a stored prompt, or a second task of a prompt created in this batch)
      goes through ``catalog.upsert_tuple`` itself, which fills in or takes over the stored tuple;
    * **images** are hashed; bytes that pass 1 validated (a pair of hashes it saw for the same tuple key) are
      not decoded again — their size and format come from pass 1 — while any other bytes (the input changed
      since) get the full check. Stored hashes count as skipped; new images are written under their content
      key, as ``catalog.store_image`` does (on a few threads, every file before its row), and inserted
      together;
    * **pairs** are skipped when stored, or stored the other way round with the experts' label ``other``; a
      pair whose tuple or an image was created in this batch (this transaction) cannot be stored and is not
      looked up; new pairs are inserted together;
    * **decisions**: a new pair's imported decision is inserted with it — the consensus row
      ``record_imported_decision`` writes for a pair without judgements, and the pair already ``complete``
      (what ``catalog.close_pair`` makes of it) — with the same events (``consensus.changed``, then
      ``pair.closed`` from open); a stored pair's goes through
      :func:`curation.services.consensus.record_imported_decision` itself, which keeps a decision made here
      (read first, in one query, for all of a batch's stored pairs: one that is gold, decided here, or holds
      this very imported decision is counted without the call, which would write nothing; ``settled``);
    * the **audit events** of what was created (``tuple.created``, ``image.created``, ``pair.created``, and
      those of the new pairs' decisions) are inserted together at the end of the batch, in its transaction.
    """

    def __init__(
        self, report: DatasetImportReport, validated: dict, checked: dict | None = None, normalised: dict | None = None
    ):
        self.report, self.validated = report, validated  # validated: pass 1's (key, correct, wrong) → row
        self.checked = checked or {}  # pass 1's sha256 → (width, height, format)
        self.normalised = normalised or {}  # pass 1's sha256 read → sha256 stored (trimmed or normalised)
        self.tuples: dict[tuple, int] = {}  # key → tuple id, once per run
        self.images: dict[str, int] = {}  # sha256 → image id, once per run
        self.pairs: set[tuple[int, int, int]] = set()
        self._files: ThreadPoolExecutor | None = None  # thread pool for image files, made on first use
        self.k = settings.DEFAULT_OVERLAP_K
        if self.k < 1:
            raise ValueError("k must be at least 1.")

    def write_batch(self, batch: list[Row]) -> None:
        from annotation.models import AuditEvent

        for row in batch:
            if row.error is not None:  # pass 1 saw none; the input changed under us
                raise ImportRefused(f"{row.file} row {row.number} changed since it was validated: {row.error}")
        items = [item for row in batch for item in row.items]
        events: list[AuditEvent] = []
        new_tuples = self._tuples(items, events)
        images, new_images = self._images(items, events)
        self._pairs(items, images, new_tuples | new_images, events)
        insert_rows(AuditEvent, events)

    @staticmethod
    def _event(action: str, target_type: str, pk: int, after: dict, before: dict | None = None):
        from annotation.models import AuditEvent

        return AuditEvent(
            actor=None, action=action, target_type=target_type, target_id=str(pk), before=before, after=after
        )

    def _tuples(self, items: list[Item], events: list) -> set:
        """Every item's tuple id into ``self.tuples``; returns ``{("t", id)}`` of the tuples created here."""
        pending, keys = [], set()
        for item in items:
            if item.key not in self.tuples and item.key not in keys:
                keys.add(item.key)
                pending.append(item)
        if not pending:
            return set()
        stored = set(
            PromptTuple.objects.filter(implicit_normalised__in=sorted({i.key[0] for i in pending})).values_list(
                "implicit_normalised", flat=True
            )
        )
        fresh, slow, claimed = [], [], set()
        for item in pending:
            if item.key[0] in stored or item.key[0] in claimed:
                slow.append(item)
            else:
                claimed.add(item.key[0])
                fresh.append(item)
        created = set()
        if fresh:
            rows = insert_rows(PromptTuple, [self._new_tuple(item.fields) for item in fresh])
            for item, tuple_ in zip(fresh, rows, strict=True):
                self.tuples[item.key] = tuple_.pk
                created.add(("t", tuple_.pk))
                events.append(self._event("tuple.created", "prompttuple", tuple_.pk, catalog.tuple_state(tuple_)))
            self.report.tuples["created"] += len(fresh)
        for item in slow:  # in row order, after the new prompts of this batch exist: as one row at a time
            fields = item.fields
            if item.create_only and Writer._find_tuple(item) is not None:
                fields = {**fields, **{name: None if name == "scene" else "" for name in item.create_only}}
            tuple_, outcome = catalog.upsert_tuple(**fields)
            self.report.tuples[outcome] += 1
            self.tuples[item.key] = tuple_.pk
            if outcome == "created":
                created.add(("t", tuple_.pk))
        return created

    @staticmethod
    def _new_tuple(fields: dict) -> PromptTuple:
        """The row ``catalog.upsert_tuple(**fields)`` creates when no tuple matches."""
        implicit = fields["implicit_prompt"].strip()
        explicit, superficial = fields["explicit_prompt"].strip(), fields["superficial_prompt"].strip()
        return PromptTuple(
            implicit_prompt=implicit,
            implicit_normalised=normalise_prompt(implicit),
            provenance=fields["provenance"] or {},
            explicit_prompt=explicit,
            superficial_prompt=superficial,
            subject=fields["subject"].strip(),
            source=fields["source"],
            scene=fields["scene"] or PromptTuple.Scene.SIMPLE,
            task=fields["task"],
            implicit_paraphrases=catalog.clean_paraphrases(implicit, fields.get("implicit_paraphrases")),
            explicit_paraphrases=catalog.clean_paraphrases(explicit, fields.get("explicit_paraphrases")),
            superficial_paraphrases=catalog.clean_paraphrases(superficial, fields.get("superficial_paraphrases")),
            scene_scoring=(fields.get("scene_scoring") or "").strip(),
            real_scoring=(fields.get("real_scoring") or "").strip(),
        )

    def _images(self, items: list[Item], events: list) -> tuple[list, set]:
        """Per item, ``(correct id, wrong id)`` (None for an item without images), and ``{("i", id)}`` of
        the images created here."""
        hashed: list[list | None] = []
        fresh: dict[str, list[Any]] = {}  # sha → [data, kind, tuple id, checked or None], first seen first
        for item in items:
            if item.explicit is None:
                hashed.append(None)
                continue
            read = []
            for ref, kind in ((item.explicit, Image.Kind.EXPLICIT), (item.superficial, Image.Kind.SUPERFICIAL)):
                data = image_bytes(ref)
                sha = hashlib.sha256(data).hexdigest()
                read.append((self.normalised.get(sha, sha), data, kind, sha in self.normalised))
            trusted = (item.key, read[0][0], read[1][0]) in self.validated
            pair = []
            for sha, data, kind, changed in read:
                known = sha in self.images or sha in fresh
                # bytes pass 1 did not see are checked in full, as store_image would; bytes it trimmed or
                # normalised are checked again for the bytes to store (not kept in memory since pass 1)
                checked = None if known or (trusted and not changed) else check_image(data, full_decode=not trusted)
                if checked is not None:
                    sha, data = checked.sha256, checked.data
                if sha not in self.images and sha not in fresh:
                    fresh[sha] = [data, kind, self.tuples[item.key], checked]
                pair.append((sha, data, kind))
            hashed.append(pair)
        created = set()
        if fresh:
            for sha, pk in Image.objects.filter(sha256__in=sorted(fresh)).values_list("sha256", "pk"):
                self.images[sha] = pk
                del fresh[sha]
                self.report.images["skipped"] += 1
        if fresh:
            rows, files = [], []
            for sha, (data, kind, tuple_id, checked) in fresh.items():
                if checked is not None:
                    width, height, fmt = checked.width, checked.height, checked.format
                else:
                    width, height, fmt = self.checked.get(sha) or image_header(data)
                key = catalog.storage_key(sha, ALLOWED_FORMATS[fmt])
                files.append((key, data))
                rows.append(
                    Image(
                        file=key,
                        sha256=sha,
                        width=width,
                        height=height,
                        format=fmt,
                        size_bytes=len(data),
                        kind=kind,
                        tuple_id=tuple_id,
                        generator="",
                        seed=None,
                    )
                )
            self._store_files(files)  # every file before its row, as store_image does
            rows = insert_rows(Image, rows)
            for image in rows:
                self.images[image.sha256] = image.pk
                created.add(("i", image.pk))
                events.append(
                    self._event(
                        "image.created",
                        "image",
                        image.pk,
                        {
                            "sha256": image.sha256,
                            "kind": image.kind,
                            "tuple": image.tuple_id,
                            "generator": "",
                            "seed": None,
                        },
                    )
                )
            self.report.images["created"] += len(rows)
        ids = [None if pair is None else (self.images[pair[0][0]], self.images[pair[1][0]]) for pair in hashed]
        return ids, created

    def _store_files(self, files: list[tuple[str, bytes]]) -> None:
        """Write new image files, several at a time (file system calls release the GIL)."""
        if self._files is None and len(files) > 1 and pool_size() > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._files = ThreadPoolExecutor(min(4, 2 * pool_size()), thread_name_prefix="import-store")
        if self._files is None:
            for key, data in files:
                store_file(key, data)
        else:
            for _ in self._files.map(lambda file: store_file(*file), files):
                pass

    def close(self) -> None:
        if self._files is not None:
            self._files.shutdown(wait=True)
            self._files = None

    def _pairs(self, items: list[Item], images: list, new: set, events: list) -> None:
        candidates = []  # (key, item), first of each key in the run
        for item, ids in zip(items, images, strict=True):
            if ids is None:
                continue
            key = (self.tuples[item.key], *ids)
            if key not in self.pairs:
                self.pairs.add(key)
                candidates.append((key, item))
        lookup = [k for k, _ in candidates if not ({("t", k[0]), ("i", k[1]), ("i", k[2])} & new)]
        same, reversed_other = {}, {}  # key → stored pair id
        if lookup:
            image_ids = sorted({i for k in lookup for i in k[1:]})
            stored = Pair.objects.filter(
                tuple_id__in=sorted({k[0] for k in lookup}),
                image_correct_id__in=image_ids,
                image_wrong_id__in=image_ids,
            )
            for pk, tuple_id, correct, wrong, label in stored.values_list(
                "pk", "tuple_id", "image_correct_id", "image_wrong_id", "consensus__label"
            ):
                same[(tuple_id, correct, wrong)] = pk
                if label == "other":  # stored the other way round, and the experts reversed it
                    reversed_other[(tuple_id, wrong, correct)] = pk
        rows, decided, stored_decisions = [], [], []
        for key, item in candidates:
            if key in same or key in reversed_other:
                self.report.pairs["skipped"] += 1
                if item.label is not None:
                    stored_label = item.label if key in same else flipped(item.label)
                    stored_decisions.append((same.get(key) or reversed_other[key], stored_label, item.decision))
            else:
                status = Pair.Status.OPEN if item.label is None else Pair.Status.COMPLETE
                rows.append(
                    Pair(tuple_id=key[0], image_correct_id=key[1], image_wrong_id=key[2], k=self.k, status=status)
                )
                decided.append(item)
        if rows:
            consensus_rows = []
            for pair, item in zip(insert_rows(Pair, rows), decided, strict=True):
                opened = {**catalog.pair_state(pair), "status": Pair.Status.OPEN}
                events.append(self._event("pair.created", "pair", pair.pk, opened))
                if item.label is not None:
                    consensus_rows.append(self._imported(pair, item, events, opened))
            insert_rows(Consensus, consensus_rows)
            self.report.pairs["created"] += len(rows)
        stored_ids = [pk for pk, _, _ in stored_decisions]
        states = {state.pk: state for state in decision_states().filter(pk__in=stored_ids)} if stored_ids else {}
        for pk, stored_label, provenance in stored_decisions:  # in row order; each one that may write locks its pair
            what = settled(states.get(pk), stored_label, provenance)
            if what is None:
                _, what = record_imported_decision(Pair(pk=pk), stored_label, provenance)
            self.report.decisions["kept" if what == "gold" else what] += 1

    def _imported(self, pair: Pair, item: Item, events: list, opened: dict) -> Consensus:
        """The consensus row of a new pair's imported decision, and its events, as
        ``record_imported_decision`` writes them for a pair without judgements."""
        assert item.label is not None  # only decided items carry a decision
        counts = dict.fromkeys(Label.values, 0)
        row = Consensus(
            pair_id=pair.pk,
            outcome=Consensus.Outcome.IMPORTED,
            label=item.label,
            agreement=None,
            n_judgements=0,
            counts=counts,
            provenance=item.decision,
        )
        after = {
            "outcome": row.outcome,
            "label": row.label,
            "agreement": None,
            "n_judgements": 0,
            "counts": counts,
            "provenance": item.decision,
        }
        events.append(self._event("consensus.changed", "pair", pair.pk, after, before=None))
        events.append(self._event("pair.closed", "pair", pair.pk, catalog.pair_state(pair), before=opened))
        self.report.decisions["recorded"] += 1
        return row


def insert_rows(model, objs: list) -> list:
    """``model.objects.bulk_create(objs)``, primary keys set on the objects. On PostgreSQL the rows go in
    with one ``COPY`` (about three times faster than Django's INSERT for tens of thousands of rows): their
    ids are taken from the table's sequence first, and every column's value is what ``bulk_create`` would
    send (``pre_save`` then ``get_db_prep_save``), so the rows are the same. The importer only reads the
    objects' primary keys afterwards (it never saves them again), so Django's per-instance state is left as is."""
    import enum

    from django.db import connections, router

    if not objs:
        return objs
    alias = router.db_for_write(model)
    connection = connections[alias]
    meta = model._meta
    if connection.vendor != "postgresql":
        return model.objects.using(alias).bulk_create(objs, batch_size=1000)
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        columns = ", ".join(quote(f.column) for f in (meta.pk, *fields))
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for pk, obj in zip(ids, objs, strict=True):
                obj.pk = pk
                values = [pk]
                for f in fields:
                    value = f.get_db_prep_save(f.pre_save(obj, True), connection)
                    values.append(value.value if isinstance(value, enum.Enum) else value)
                copy.write_row(values)
    return objs

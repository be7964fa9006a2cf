"""Dataset versions: build and freeze an immutable, labelled, split snapshot of curated pairs.

Rules (tested in tests/curation/test_versions.py):

* **Who.** Only admins (:func:`annotation.roles.is_admin`) build versions; others get
  ``PermissionDenied``. Bad input raises :class:`VersionError` (a ``ValueError``), with a message
  that names the field.
* **Selection.** Non-gold, non-retired pairs whose tuple has a task and whose
  :class:`~curation.models.Consensus` is *decided* with an outcome in ``outcomes`` (default
  confirmed, reversed, adjudicated, imported). ``pending`` and ``disputed`` have no label and can never be
  selected. Pairs labelled ``both``/``neither`` (rejected, or adjudicated as both/neither) are
  selected only when ``"rejected"`` is among the outcomes. ``tasks`` (codes) and ``disciplines``
  (slugs) narrow by the tuple's task; ``min_agreement`` keeps pairs whose judgements agree at least
  that much, except adjudicated and imported pairs, whose label is a reviewer's (or the source's)
  decision; ``exclude_pairs`` and
  ``exclude_tuples`` take ids out.
* **Freezing.** In one transaction: the members with their label, outcome, agreement and
  judgement count as they are now, the split of each (:mod:`curation.services.splits`), the
  content hash, the counts, the parent, and the audit event ``version.frozen``. Nothing changes a
  version afterwards: no service here or elsewhere updates one, and later consensus changes do not
  reach its members.
* **Parent.** By default the latest version; its (and its ancestors') split assignments are kept
  for every group the new version shares with them. ``parent=None`` starts afresh.
* **Imported splits.** With ``keep_imported_splits`` (the default), a group whose pairs carry an imported
  decision whose provenance names a split (``train``, ``validation``, ``test_S``, ``test_C``: the split the
  row came from) keeps that split, so the published test sets stay test sets; a parent's assignment still
  wins, and when a group's imported pairs name several splits the first of test_C, test_S, validation,
  train wins (no tuple of a test set leaks into training). ``split_ratios`` records the choice and how many
  groups it pinned. ``False``: every group is drawn.
* **Content hash.** sha256 over the members sorted by pair id, each as
  ``pair id, label, split, sha256 of the expected image, sha256 of the other image``: the same
  members with the same labels, splits and image bytes give the same hash, whatever the name.
* **Counts.** ``{"total": n, "splits": {split: n}, "tasks": {code: {split: n, ..., "total": n}}}``
  with every split present (zeros included).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet

from annotation import roles
from annotation.models import Discipline, Pair, Task
from annotation.services import audit
from curation.models import Consensus, DatasetVersion, Label, VersionMember
from curation.services import splits

Outcome = Consensus.Outcome
DEFAULT_OUTCOMES = (Outcome.CONFIRMED.value, Outcome.REVERSED.value, Outcome.ADJUDICATED.value, Outcome.IMPORTED.value)
SELECTABLE_OUTCOMES = (
    Outcome.CONFIRMED.value,
    Outcome.REVERSED.value,
    Outcome.REJECTED.value,
    Outcome.ADJUDICATED.value,
    Outcome.IMPORTED.value,
)
_REJECTED_LABELS = (Label.BOTH.value, Label.NEITHER.value)
LATEST = object()  # build_version(parent=LATEST): the latest version, if any
BATCH = 1000


class VersionError(ValueError):
    """Bad input for a version: unknown task, bad ratios, duplicate name, nothing selected..."""


# --- input -------------------------------------------------------------------------------------


def _ids(values, field: str) -> list[int]:
    try:
        ids = sorted({int(value) for value in values or ()})
    except (TypeError, ValueError):
        raise VersionError(f"{field}: ids must be integers") from None
    if any(i < 1 for i in ids):
        raise VersionError(f"{field}: ids must be positive")
    return ids


def clean_filters(
    *, tasks=None, disciplines=None, outcomes=DEFAULT_OUTCOMES, min_agreement=None, exclude_pairs=(), exclude_tuples=()
) -> dict:
    """The filters as stored on a version (sorted lists, None for "all"); VersionError if bad."""
    if tasks:
        tasks = sorted({str(code).strip().upper() for code in tasks if str(code).strip()})
        known = set(Task.objects.filter(code__in=tasks).values_list("code", flat=True))
        if unknown := [code for code in tasks if code not in known]:
            raise VersionError(f"tasks: unknown task code(s) {', '.join(unknown)}")
    if disciplines:
        disciplines = sorted({str(slug).strip().lower() for slug in disciplines if str(slug).strip()})
        known = set(Discipline.objects.filter(slug__in=disciplines).values_list("slug", flat=True))
        if unknown := [slug for slug in disciplines if slug not in known]:
            raise VersionError(f"disciplines: unknown discipline(s) {', '.join(unknown)}")
    outcomes = sorted({str(outcome).strip().lower() for outcome in (outcomes or ())})
    if not outcomes:
        raise VersionError("outcomes: choose at least one")
    if bad := [outcome for outcome in outcomes if outcome not in SELECTABLE_OUTCOMES]:
        raise VersionError(
            f"outcomes: {', '.join(bad)} cannot be selected (choose from {', '.join(SELECTABLE_OUTCOMES)}; "
            "pending and disputed pairs have no label)"
        )
    if min_agreement is not None:
        try:
            min_agreement = float(min_agreement)
        except (TypeError, ValueError):
            raise VersionError("min_agreement: must be a number between 0 and 1") from None
        if not (math.isfinite(min_agreement) and 0 <= min_agreement <= 1):
            raise VersionError("min_agreement: must be a number between 0 and 1")
    return {
        "tasks": tasks or None,
        "disciplines": disciplines or None,
        "outcomes": outcomes,
        "min_agreement": min_agreement,
        "exclude_pairs": _ids(exclude_pairs, "exclude_pairs"),
        "exclude_tuples": _ids(exclude_tuples, "exclude_tuples"),
    }


def selected_consensus(filters: dict) -> QuerySet[Consensus]:
    """Consensus rows of the pairs a version with these (cleaned) filters would hold."""
    qs = (
        Consensus.objects.filter(pair__is_gold=False, pair__tuple__task__isnull=False, outcome__in=filters["outcomes"])
        .exclude(label="")
        .exclude(pair__status=Pair.Status.RETIRED)
    )
    if Outcome.REJECTED not in filters["outcomes"]:
        qs = qs.exclude(label__in=_REJECTED_LABELS)
    if filters["tasks"]:
        qs = qs.filter(pair__tuple__task__code__in=filters["tasks"])
    if filters["disciplines"]:
        qs = qs.filter(pair__tuple__task__discipline__slug__in=filters["disciplines"])
    if filters["min_agreement"] is not None:
        qs = qs.filter(
            Q(outcome__in=(Outcome.ADJUDICATED, Outcome.IMPORTED)) | Q(agreement__gte=filters["min_agreement"] - 1e-9)
        )
    if filters["exclude_pairs"]:
        qs = qs.exclude(pair_id__in=filters["exclude_pairs"])
    if filters["exclude_tuples"]:
        qs = qs.exclude(pair__tuple_id__in=filters["exclude_tuples"])
    return qs


def preview_counts(filters: dict) -> dict[str, int]:
    """``{task code: pairs}`` that these cleaned filters select now: one aggregate query."""
    rows = (
        selected_consensus(filters)
        .order_by()
        .values("pair__tuple__task__code")
        .annotate(n=Count("pk"))
        .values_list("pair__tuple__task__code", "n")
    )
    return dict(sorted(rows))


# --- hash and counts ---------------------------------------------------------------------------


def content_hash(rows) -> str:
    """sha256 over ``(pair_id, label, split, correct sha256, wrong sha256)`` rows, sorted by pair id."""
    digest = hashlib.sha256()
    for pair_id, label, split, correct, wrong in sorted(rows, key=lambda row: row[0]):
        digest.update(f"{pair_id}\t{label}\t{split}\t{correct}\t{wrong}\n".encode())
    return digest.hexdigest()


def empty_counts() -> dict:
    return {"total": 0, "splits": dict.fromkeys(splits.SPLITS, 0), "tasks": {}}


def make_counts(rows) -> dict:
    """Counts from ``(task code, split, n)`` rows."""
    counts = empty_counts()
    for task, split, n in rows:
        per_task = counts["tasks"].setdefault(task, {**dict.fromkeys(splits.SPLITS, 0), "total": 0})
        per_task[split] += n
        per_task["total"] += n
        counts["splits"][split] += n
        counts["total"] += n
    counts["tasks"] = dict(sorted(counts["tasks"].items()))
    return counts


# --- build -------------------------------------------------------------------------------------


def latest_version() -> DatasetVersion | None:
    return DatasetVersion.objects.order_by("-created_at", "-id").first()


def inherited_splits(parent: DatasetVersion | None) -> dict[str, str]:
    """``{group_key: split}`` from the parent and its ancestors, the nearest one winning."""
    chain, seen, version = [], set(), parent
    while version is not None and version.pk not in seen:
        seen.add(version.pk)
        chain.append(version.pk)
        version = version.parent
    if not chain:
        return {}
    rank = {pk: i for i, pk in enumerate(chain)}
    found: dict[str, tuple[int, str]] = {}
    rows = VersionMember.objects.filter(version_id__in=chain).values_list("group_key", "split", "version_id")
    for key, split, version_id in rows.distinct().iterator(chunk_size=5000):
        if key not in found or rank[version_id] < found[key][0]:
            found[key] = (rank[version_id], split)
    return {key: split for key, (_, split) in found.items()}


def build_version(
    admin,
    name: str,
    *,
    tasks=None,
    disciplines=None,
    outcomes=DEFAULT_OUTCOMES,
    min_agreement=None,
    exclude_pairs=(),
    exclude_tuples=(),
    ratios=None,
    seed: int = 0,
    parent=LATEST,
    keep_imported_splits: bool = True,
) -> DatasetVersion:
    """Select, split and freeze a version in one transaction; audited ``version.frozen``."""
    if not roles.is_admin(admin):
        raise PermissionDenied("Only admins build dataset versions.")
    name = (name or "").strip()
    if not name:
        raise VersionError("name: required")
    max_length = DatasetVersion._meta.get_field("name").max_length
    if max_length is not None and len(name) > max_length:
        raise VersionError(f"name: at most {max_length} characters")
    try:
        ratios = splits.normalise_ratios(splits.DEFAULT_RATIOS if ratios is None else ratios)
    except splits.BadRatios as exc:
        raise VersionError(f"ratios: {exc}") from None
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise VersionError("seed: must be an integer") from None
    filters = clean_filters(
        tasks=tasks,
        disciplines=disciplines,
        outcomes=outcomes,
        min_agreement=min_agreement,
        exclude_pairs=exclude_pairs,
        exclude_tuples=exclude_tuples,
    )
    try:
        with transaction.atomic():
            return _freeze(admin, name, filters, ratios, seed, parent, bool(keep_imported_splits))
    except IntegrityError:
        if DatasetVersion.objects.filter(name=name).exists():
            raise VersionError(f"name: a version named {name!r} exists already") from None
        raise


# When a group's imported pairs came from different splits, the one listed first wins: a tuple that is in a
# published test set stays out of train and validation.
_IMPORTED_SPLIT_ORDER = (splits.TEST_C, splits.TEST_S, splits.VALIDATION, splits.TRAIN)


def imported_splits(keys, rows, provenance_index: int, outcome_index: int) -> dict[str, str]:
    """``{group_key: split}`` for the groups with imported decisions whose provenance names a split."""
    pinned: dict[str, str] = {}
    for key, row in zip(keys, rows, strict=True):
        provenance = row[provenance_index] or {}
        split = provenance.get("split") if isinstance(provenance, dict) else None
        if row[outcome_index] != Outcome.IMPORTED or split not in _IMPORTED_SPLIT_ORDER:
            continue
        if key not in pinned or _IMPORTED_SPLIT_ORDER.index(split) < _IMPORTED_SPLIT_ORDER.index(pinned[key]):
            pinned[key] = split
    return pinned


def _freeze(admin, name, filters, ratios, seed, parent, keep_imported: bool = True) -> DatasetVersion:
    if DatasetVersion.objects.filter(name=name).exists():
        raise VersionError(f"name: a version named {name!r} exists already")
    if parent is LATEST:
        parent = latest_version()
    rows = list(
        selected_consensus(filters)
        .order_by("pair_id")
        .values_list(
            "pair_id",
            "label",
            "outcome",
            "agreement",
            "n_judgements",
            "pair__tuple__implicit_prompt",
            "pair__tuple__subject",
            "pair__tuple__scene",
            "pair__tuple__task__code",
            "pair__image_correct__sha256",
            "pair__image_wrong__sha256",
            "provenance",
        )
    )
    if not rows:
        raise VersionError("no pairs match these filters")
    keys = [splits.group_key(row[5], row[6]) for row in rows]
    scenes = splits.group_scenes((key, row[7]) for key, row in zip(keys, rows, strict=True))
    pinned = imported_splits(keys, rows, 11, 2) if keep_imported else {}
    assignment = splits.assign_splits(scenes, ratios, seed, {**pinned, **inherited_splits(parent)})
    version = DatasetVersion.objects.create(
        name=name,
        filters=filters,
        split_ratios={
            **ratios,
            "seed": seed,
            "keep_imported_splits": keep_imported,
            "imported_split_groups": len(pinned),
        },
        content_hash=content_hash(
            (row[0], row[1], assignment[key], row[9], row[10]) for key, row in zip(keys, rows, strict=True)
        ),
        counts=_counts_of(rows, keys, assignment),
        parent=parent,
        created_by=admin,
    )
    VersionMember.objects.bulk_create(
        (
            VersionMember(
                version=version,
                pair_id=row[0],
                label=row[1],
                outcome=row[2],
                agreement=row[3],
                n_judgements=row[4],
                split=assignment[key],
                group_key=key,
            )
            for key, row in zip(keys, rows, strict=True)
        ),
        batch_size=BATCH,
    )
    audit.record(admin, "version.frozen", version, after=describe(version))
    return version


def _counts_of(rows, keys, assignment) -> dict:
    tally: dict[tuple[str, str], int] = defaultdict(int)
    for key, row in zip(keys, rows, strict=True):
        tally[(row[8], assignment[key])] += 1
    return make_counts((task, split, n) for (task, split), n in tally.items())


def describe(version: DatasetVersion) -> dict:
    """A JSON summary of a version (for the audit log, the command's --json)."""
    return {
        "id": version.pk,
        "name": version.name,
        "content_hash": version.content_hash,
        "counts": version.counts,
        "filters": version.filters,
        "split_ratios": version.split_ratios,
        "parent": version.parent_id,
    }


# --- diff --------------------------------------------------------------------------------------


def diff_versions(a: DatasetVersion | int, b: DatasetVersion | int) -> dict:
    """What changed from version ``a`` to version ``b``, by pair id (two queries).

    ``added``/``removed``: pair ids only in ``b``/only in ``a``; ``relabelled`` and ``moved``:
    ``{"pair", "from", "to"}`` for shared pairs whose label or split differ; ``counts`` has the
    length of each list. All lists are sorted by pair id.
    """
    a_id, b_id = getattr(a, "pk", a), getattr(b, "pk", b)
    old = {
        pair: (label, split)
        for pair, label, split in VersionMember.objects.filter(version_id=a_id).values_list("pair_id", "label", "split")
    }
    new = {
        pair: (label, split)
        for pair, label, split in VersionMember.objects.filter(version_id=b_id).values_list("pair_id", "label", "split")
    }
    shared = sorted(old.keys() & new.keys())
    changes: dict[str, list] = {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "relabelled": [{"pair": p, "from": old[p][0], "to": new[p][0]} for p in shared if old[p][0] != new[p][0]],
        "moved": [{"pair": p, "from": old[p][1], "to": new[p][1]} for p in shared if old[p][1] != new[p][1]],
    }
    counts = {name: len(items) for name, items in changes.items()}
    counts["unchanged"] = sum(1 for p in shared if old[p] == new[p])
    return {"a": a_id, "b": b_id, **changes, "counts": counts}

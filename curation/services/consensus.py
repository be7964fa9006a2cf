"""Consensus: what a pair's judgements say, or what a reviewer decided.

Rules (tested in tests/curation/test_consensus.py):

* Each judgement maps to a :class:`~curation.models.Label` relative to the pair's *expected*
  image (:func:`label_of`); left/right never leave the lease.
* Gold pairs have no consensus row: their judgements measure annotators, not pairs.
* Below ``pair.k`` judgements the outcome is ``pending``. Otherwise the label held by a unique
  majority with a share of at least ``settings.CONSENSUS_MIN_SHARE`` decides: ``expected`` →
  ``confirmed``, ``other`` → ``reversed``, ``both``/``neither`` → ``rejected``; without such a
  majority (a tie included) the pair is ``disputed``.
* The latest adjudication overrides all of that (``adjudicated``, its label); counts and
  agreement still describe the judgements.
* An *imported* decision (outcome ``imported``, written by the dataset import with its
  provenance) stands while the pair's own judgements are fewer than k and nobody adjudicated it;
  judgements reaching k, or an adjudication, take over as for any pair.

Locking: :func:`recompute_consensus` locks the pair's row, as every judgement change does
(``annotation/services/queue.py``), so the row is written by one transaction at a time. When
called as a judgement's consequence (:mod:`curation.services.judging`) the caller already holds
that lock and passes the locked row along (``locked_pair``), so no second lock, savepoint or read
of the pair is needed on the judgement's path.

Audit: ``consensus.changed`` is recorded only when the outcome or label changes. A missing row
counts as ``pending`` with no label (the model's defaults), so the first judgements of a pair are
not events but its first decision is. Events name the *pair*, not the row: a pair that turns
gold loses its row, and its history must not split.
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotation.models import Judgement, Pair
from annotation.services import audit, guides, queue_sql
from curation.models import Adjudication, Consensus, Label

Outcome = Consensus.Outcome

_DECIDED: dict[str, str] = {
    Label.EXPECTED: Outcome.CONFIRMED,
    Label.OTHER: Outcome.REVERSED,
    Label.BOTH: Outcome.REJECTED,
    Label.NEITHER: Outcome.REJECTED,
}
_UNDECIDED = (Outcome.PENDING, "")


def label_of(choice: str, chosen_image_id: int | None, image_correct_id: int) -> str:
    """The label of one judgement: a chosen image is either the expected one or the other."""
    if choice in (Judgement.Choice.LEFT, Judgement.Choice.RIGHT):
        return Label.EXPECTED if chosen_image_id == image_correct_id else Label.OTHER
    return choice  # both / neither are labels already


def decide(counts: dict[str, int], k: int) -> tuple[str, str]:
    """``(outcome, label)`` from the judgements per label, before any adjudication."""
    n = sum(counts.values())
    if n < k:
        return _UNDECIDED
    top = max(counts.values())
    leaders = [label for label, count in counts.items() if count == top]
    if len(leaders) == 1 and top / n >= settings.CONSENSUS_MIN_SHARE:
        return _DECIDED[leaders[0]], leaders[0]
    return Outcome.DISPUTED, ""


# One statement for all the consensus needs to read, because it runs inside every judgement: a row per
# judgement of the pair (choice, chosen image; one row of NULLs when there is none), each carrying the
# pair's consensus row (NULLs when there is none) and the label of its latest adjudication. The ORM
# needs three queries for this (and compiles each on every judgement). Parameters: the pair, three times.
READ = """
SELECT j.choice, j.chosen_image_id,
       (SELECT a.label FROM curation_adjudication a WHERE a.pair_id = %(pair)s
        ORDER BY a.created_at DESC, a.id DESC LIMIT 1),
       c.id, c.pair_id, c.outcome, c.label, c.agreement, c.n_judgements, c.counts, c.updated_at
FROM (SELECT 1 AS one) one
LEFT JOIN curation_consensus c ON c.pair_id = %(pair)s
LEFT JOIN annotation_judgement j ON j.pair_id = %(pair)s
"""

CONSENSUS_FIELDS = ("id", "pair_id", "outcome", "label", "agreement", "n_judgements", "counts", "updated_at")


def _read(pair: Pair) -> tuple[Consensus | None, list[tuple[str, int | None]], str | None]:
    """``(current row or None, the judgements' (choice, chosen image), latest adjudication label or None)``."""
    with connection.cursor() as cursor:
        cursor.execute(READ, {"pair": pair.pk})
        found = cursor.fetchall()
    first = found[0]
    current = queue_sql.from_db(Consensus, CONSENSUS_FIELDS, first[3:]) if first[3] is not None else None
    judgements = [(choice, chosen) for choice, chosen, *_ in found if choice is not None]
    return current, judgements, first[2]


def _fields(pair: Pair, judgements, adjudicated: str | None) -> dict:
    found = Counter(label_of(choice, chosen, pair.image_correct_id) for choice, chosen in judgements)
    counts = {label: found[label] for label in Label.values}
    n = sum(counts.values())
    outcome, label = decide(counts, pair.k)
    if adjudicated is not None:
        outcome, label = Outcome.ADJUDICATED, adjudicated
    return {
        "outcome": outcome,
        "label": label,
        "agreement": max(counts.values()) / n if n else None,
        "n_judgements": n,
        "counts": counts,
    }


def _snapshot(consensus: Consensus | None) -> dict | None:
    if consensus is None:
        return None
    return {
        "outcome": consensus.outcome,
        "label": consensus.label,
        "agreement": consensus.agreement,
        "n_judgements": consensus.n_judgements,
        "counts": consensus.counts,
    }


def _key(snapshot: dict | None) -> tuple[str, str]:
    return (snapshot["outcome"], snapshot["label"]) if snapshot else _UNDECIDED


def _store(pair: Pair, current: Consensus | None, fields: dict) -> Consensus:
    if current is None:
        return Consensus.objects.create(pair=pair, **fields)
    changed = [name for name, value in fields.items() if getattr(current, name) != value]
    if changed:  # an unchanged row keeps its updated_at: the review list orders by it
        for name in changed:
            setattr(current, name, fields[name])
        current.updated_at = timezone.now()
        current.save(update_fields=[*changed, "updated_at"])
    return current


def recompute_consensus(pair_id: int, actor=None, *, locked_pair: Pair | None = None) -> Consensus | None:
    """Bring the pair's consensus row up to date; None for a gold pair (whose row is removed).

    ``locked_pair``: the caller already holds the pair's row lock inside its transaction and passes
    the row as it stands (the queue does, on every judgement); otherwise this locks it itself."""
    if locked_pair is not None:
        return _recompute(locked_pair, actor)
    with transaction.atomic():
        return _recompute(Pair.objects.select_for_update().get(pk=pair_id), actor)


def _recompute(pair: Pair, actor) -> Consensus | None:
    current, judgements, adjudicated = _read(pair)
    before = _snapshot(current)
    if pair.is_gold:
        if current is not None:
            current.delete()
        consensus = None
    else:
        fields = _fields(pair, judgements, adjudicated)
        if current is not None and current.outcome == Outcome.IMPORTED and fields["outcome"] == Outcome.PENDING:
            consensus = current  # an imported decision stands until judgements decide or a reviewer does
        else:
            consensus = _store(pair, current, fields)
    after = _snapshot(consensus)
    if _key(before) != _key(after):
        audit.record(actor, "consensus.changed", pair, before=before, after=after)
    return consensus


def recompute_all(*, batch_size: int = 500, progress=None) -> int:
    """Recompute every pair that has judgements, adjudications or a consensus row; returns how many.

    Idempotent: an up-to-date row is not written. Each pair is its own short transaction, so
    annotators judging meanwhile wait for one pair at most; ``batch_size`` is how many pair ids
    are read at a time, and ``progress(done, total)`` is called after each batch.
    """
    pairs = Pair.objects.filter(
        Q(Exists(Judgement.objects.filter(pair=OuterRef("pk"))))
        | Q(Exists(Adjudication.objects.filter(pair=OuterRef("pk"))))
        | Q(Exists(Consensus.objects.filter(pair=OuterRef("pk"))))
    ).order_by("pk")
    total = pairs.count()
    done, last_id = 0, 0
    while ids := list(pairs.filter(pk__gt=last_id).values_list("pk", flat=True)[:batch_size]):
        for pair_id in ids:
            recompute_consensus(pair_id)
        done, last_id = done + len(ids), ids[-1]
        if progress is not None:
            progress(done, total)
    return done


def record_imported_decision(
    pair: Pair, label: str, provenance: dict, actor=None, *, close: bool = True
) -> tuple[Consensus | None, str]:
    """Record a decision made elsewhere (a published dataset's expert label, another platform's export) as
    the pair's consensus: outcome ``imported``, ``label``, and ``provenance`` (where it came from and how it
    was decided there). Returns ``(row, what)``, ``what`` one of ``"recorded"``, ``"unchanged"`` (the same
    imported decision is stored), ``"kept"`` (the pair has a decision of its own here — judgements at k or
    an adjudication — which wins; nothing written) or ``"gold"`` (gold pairs have no consensus).
    ``close``: take the pair off the queue (:func:`annotation.services.catalog.close_pair`), so an imported
    dataset can be frozen without re-judging."""
    from annotation.services import catalog

    if label not in Label.values:
        raise ValueError(f"label must be one of {', '.join(Label.values)}, not {label!r}")
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair.pk)
        if pair.is_gold:
            return None, "gold"
        current, judgements, adjudicated = _read(pair)
        if current is not None and current.outcome not in (Outcome.PENDING, Outcome.IMPORTED):
            return current, "kept"
        fields = _fields(pair, judgements, adjudicated)
        fields.update(outcome=Outcome.IMPORTED, label=label, provenance=provenance)
        if current is not None and all(getattr(current, k) == v for k, v in fields.items()):
            what, consensus = "unchanged", current
        else:
            before = _snapshot(current)
            consensus = _store(pair, current, fields)
            audit.record(
                actor,
                "consensus.changed",
                pair,
                before=before,
                after={**(_snapshot(consensus) or {}), "provenance": provenance},
            )
            what = "recorded"
        if close:
            catalog.close_pair(pair.pk, actor=actor)
        return consensus, what


# --- Decided pairs, for the worked examples of task guides (curation/views_guides.py) -------------

# Outcomes that say which of the two images is right: a confirmed or reversed majority, or an adjudication
# whose label is one of the images (an adjudicated both/neither shows no right image).
EXAMPLE_OUTCOMES = (Outcome.CONFIRMED, Outcome.REVERSED, Outcome.ADJUDICATED)


def right_image_of(pair: Pair, decision: Consensus) -> int | None:
    """The image a decided pair's consensus says is right; ``None`` when it names neither image."""
    if decision.outcome not in EXAMPLE_OUTCOMES:
        return None
    if decision.label == Label.EXPECTED:
        return pair.image_correct_id
    if decision.label == Label.OTHER:
        return pair.image_wrong_id
    return None


def example_candidates(task_id: int):
    """The task's decided pairs that may become worked examples: a right image is known, the pair is not
    gold, takes no judgements and is no example yet. Newest decision first."""
    return (
        Consensus.objects.filter(
            pair__tuple__task_id=task_id,
            pair__is_gold=False,
            outcome__in=EXAMPLE_OUTCOMES,
            label__in=(Label.EXPECTED, Label.OTHER),
            pair__guide_example__isnull=True,
        )
        .exclude(pair__status=Pair.Status.OPEN)
        .select_related("pair__tuple")
        .order_by("-updated_at", "-pair_id")
    )


def add_worked_example(actor, task, pair_id: int, *, note: str = ""):
    """Show a decided pair in ``task``'s guide with the image its consensus says is right
    (:func:`annotation.services.guides.add_example`; ``GuideError`` when the pair is not decided)."""
    with transaction.atomic():
        pair = Pair.objects.select_for_update().filter(pk=pair_id).first()
        decision = Consensus.objects.filter(pair_id=pair_id).first()
        right = None if pair is None or decision is None else right_image_of(pair, decision)
        if right is None:
            raise guides.GuideError(
                "Only a decided pair (confirmed, reversed or adjudicated to one image) can be an example."
            )
        return guides.add_example(actor, task, pair_id, right_image_id=right, note=note)

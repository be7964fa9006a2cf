"""Consensus: what a pair's judgements say, or what a reviewer decided.

Rules (tested in tests/test_consensus.py):

* Each judgement maps to a :class:`~curation.models.Label` relative to the pair's *expected*
  image (:func:`label_of`); left/right never leave the lease.
* Gold pairs have no consensus row: their judgements measure annotators, not pairs.
* Below ``pair.k`` judgements the outcome is ``pending``. Otherwise the label held by a unique
  majority with a share of at least ``settings.CONSENSUS_MIN_SHARE`` decides: ``expected`` →
  ``confirmed``, ``other`` → ``reversed``, ``both``/``neither`` → ``rejected``; without such a
  majority (a tie included) the pair is ``disputed``.
* The latest adjudication overrides all of that (``adjudicated``, its label); counts and
  agreement still describe the judgements.

Locking: :func:`recompute_consensus` locks the pair's row, as every judgement change does
(``annotation/services/queue.py``), so the row is written by one transaction at a time. When
called from the ``judgements_changed`` receiver the caller already holds that lock and taking it
again is free.

Audit: ``consensus.changed`` is recorded only when the outcome or label changes. A missing row
counts as ``pending`` with no label (the model's defaults), so the first judgements of a pair are
not events but its first decision is. Events name the *pair*, not the row: a pair that turns
gold loses its row, and its history must not split.
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from annotation.models import Judgement, Pair
from annotation.services import audit
from curation.models import Adjudication, Consensus, Label

Outcome = Consensus.Outcome

_DECIDED = {
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


def _label_counts(pair: Pair) -> dict[str, int]:
    found = Counter(
        label_of(choice, chosen, pair.image_correct_id)
        for choice, chosen in pair.judgements.values_list("choice", "chosen_image_id")
    )
    return {label: found[label] for label in Label.values}


def _fields(pair: Pair) -> dict:
    counts = _label_counts(pair)
    n = sum(counts.values())
    outcome, label = decide(counts, pair.k)
    latest = Adjudication.objects.filter(pair=pair).order_by("-created_at", "-id").first()
    if latest is not None:
        outcome, label = Outcome.ADJUDICATED, latest.label
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
    return {"outcome": consensus.outcome, "label": consensus.label, "agreement": consensus.agreement,
            "n_judgements": consensus.n_judgements, "counts": consensus.counts}


def _key(snapshot: dict | None) -> tuple[str, str]:
    return (snapshot["outcome"], snapshot["label"]) if snapshot else _UNDECIDED


def _store(pair: Pair, current: Consensus | None) -> Consensus:
    fields = _fields(pair)
    if current is None:
        return Consensus.objects.create(pair=pair, **fields)
    changed = [name for name, value in fields.items() if getattr(current, name) != value]
    if changed:  # an unchanged row keeps its updated_at: the review list orders by it
        for name in changed:
            setattr(current, name, fields[name])
        current.save(update_fields=[*changed, "updated_at"])
    return current


def recompute_consensus(pair_id: int, actor=None) -> Consensus | None:
    """Bring the pair's consensus row up to date; None for a gold pair (whose row is removed)."""
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        current = Consensus.objects.filter(pair=pair).first()
        before = _snapshot(current)
        if pair.is_gold:
            if current is not None:
                current.delete()
            consensus = None
        else:
            consensus = _store(pair, current)
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

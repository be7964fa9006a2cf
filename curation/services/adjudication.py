"""Reviewer adjudication: the review queue, the detail of one item, and the decision.

Decisions:

* Any non-gold pair may be adjudicated, not only the disputed and reversed ones the review list
  offers: a reviewer who spots a wrong ``confirmed`` pair must be able to fix it. Gold pairs are
  refused: their answer is the gold item's.
* The latest adjudication is the pair's label (see :mod:`curation.services.consensus`); earlier
  ones stay as history. Adjudicated pairs leave the review queue.
* The queue is ordered oldest first by the time the consensus row last changed, i.e. how long the
  item has waited; the pair id breaks ties.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from annotation import roles
from annotation.models import Judgement, Pair
from annotation.services import audit
from curation.models import Adjudication, Consensus, Label
from curation.services.consensus import label_of, recompute_consensus

REVIEW_OUTCOMES = (Consensus.Outcome.DISPUTED, Consensus.Outcome.REVERSED)
# A flagged pair waits for a reviewer whatever its outcome, until a reviewer (or an import) has decided it.
DECIDED_OUTCOMES = (Consensus.Outcome.ADJUDICATED, Consensus.Outcome.IMPORTED)
COMMENT_MAX_LENGTH = 4000
RECENT_DECISIONS = 10


class InvalidAdjudication(ValueError):
    """A decision that cannot be recorded (unknown label, gold pair, comment too long)."""


def adjudicate(reviewer, pair_id: int, label: str, comment: str = "") -> Adjudication:
    """Record a reviewer's label for a pair and recompute its consensus.

    Raises ``PermissionDenied`` for non-reviewers, ``Pair.DoesNotExist`` for an unknown pair and
    :class:`InvalidAdjudication` for a decision that cannot stand.
    """
    if not roles.is_reviewer(reviewer):
        raise PermissionDenied("Only reviewers and admins adjudicate pairs.")
    if label not in Label.values:
        raise InvalidAdjudication(f"label must be one of {', '.join(Label.values)}, not {label!r}.")
    if len(comment) > COMMENT_MAX_LENGTH:
        raise InvalidAdjudication(f"The comment is limited to {COMMENT_MAX_LENGTH} characters.")
    with transaction.atomic():
        pair = Pair.objects.select_for_update().get(pk=pair_id)
        if pair.is_gold:
            raise InvalidAdjudication("Gold pairs are not adjudicated: their answer is the gold item's.")
        adjudication = Adjudication.objects.create(pair=pair, reviewer=reviewer, label=label, comment=comment)
        audit.record(
            reviewer, "adjudication.created", adjudication, after={"pair": pair.pk, "label": label, "comment": comment}
        )
        recompute_consensus(pair.pk, actor=reviewer)
        return adjudication


def _flagged_judgements() -> Q:
    return Q(flag_prompt_unclear=True) | Q(flag_image_broken=True) | Q(flag_off_topic=True)


def review_queue(*, task: str | None = None, outcome: str | None = None, flagged: bool = False) -> QuerySet[Consensus]:
    """Disputed and reversed pairs, oldest first, with what a list row shows and a count of
    flagged judgements, all in one query.

    ``flagged``: instead, the undecided pairs (any outcome but adjudicated or imported, or just
    ``outcome``) that have at least one flagged judgement.

    The flagged count is a correlated subquery rather than a join + GROUP BY, so that the database
    can walk the queue in order (index ``consensus_review_queue``) and count only for the rows of
    the page it returns; a paginator's count then needs no join to the judgements either."""
    flagged_count = (
        Judgement.objects.filter(pair_id=OuterRef("pair_id"))
        .filter(_flagged_judgements())
        .order_by()
        .values("pair_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    if flagged:
        items = Consensus.objects.exclude(outcome__in=DECIDED_OUTCOMES).filter(pair_id__in=_flagged_pair_ids())
        if outcome:
            items = items.filter(outcome=outcome)
    else:
        items = Consensus.objects.filter(outcome__in=[outcome] if outcome else REVIEW_OUTCOMES)
    items = (
        items.select_related("pair__tuple__task__discipline")
        .annotate(flagged=Coalesce(Subquery(flagged_count, output_field=IntegerField()), 0))
        .order_by("updated_at", "pair_id")
    )
    return items.filter(pair__tuple__task__code=task) if task else items


def _flagged_pair_ids() -> QuerySet:
    return Judgement.objects.filter(_flagged_judgements()).values("pair_id")


def flagged_waiting(*, task: str | None = None) -> int:
    """How many undecided pairs have at least one flagged judgement (one query)."""
    items = Consensus.objects.exclude(outcome__in=DECIDED_OUTCOMES).filter(pair_id__in=_flagged_pair_ids())
    if task:
        items = items.filter(pair__tuple__task__code=task)
    return items.count()


def recent_decisions(limit: int = RECENT_DECISIONS) -> list[Adjudication]:
    """The latest adjudications, newest first, with their pair's task and reviewer (one query)."""
    return list(
        Adjudication.objects.select_related("reviewer", "pair__tuple__task").order_by("-created_at", "-id")[:limit]
    )


def queue_totals(*, task: str | None = None) -> dict[str, int]:
    """How many pairs wait per review outcome (one aggregate query)."""
    items = Consensus.objects.filter(outcome__in=REVIEW_OUTCOMES)
    if task:
        items = items.filter(pair__tuple__task__code=task)
    return items.aggregate(**{outcome.value: Count("pk", filter=Q(outcome=outcome)) for outcome in REVIEW_OUTCOMES})


def next_in_queue(queue: QuerySet[Consensus], pair_id: int) -> Consensus | None:
    """The item after ``pair_id``'s place in the queue, wrapping to the start; None if no other.

    Call it *before* deciding: the decision moves the pair's row out of the queue and changes its
    ``updated_at``, which is the place.
    """
    others = queue.exclude(pair_id=pair_id)
    place = Consensus.objects.filter(pair_id=pair_id).values_list("updated_at", flat=True).first()
    if place is not None:
        later = others.filter(Q(updated_at__gt=place) | Q(updated_at=place, pair_id__gt=pair_id)).first()
        if later is not None:
            return later
    return others.first()


@dataclass(frozen=True)
class ReviewedJudgement:
    """A judgement as the review page shows it: with its label relative to the expected image."""

    judgement: Judgement
    label: str


def review_item(pair_id: int) -> dict:
    """Everything the adjudication page shows about a pair, in three queries.

    Raises ``Pair.DoesNotExist``. Each judgement carries its ``label`` (relative to the expected
    image) so the page never shows left/right.
    """
    pair = Pair.objects.select_related("tuple__task__discipline", "image_correct", "image_wrong", "consensus").get(
        pk=pair_id
    )
    judgements = [
        ReviewedJudgement(judgement, label_of(judgement.choice, judgement.chosen_image_id, pair.image_correct_id))
        for judgement in pair.judgements.select_related("annotator").order_by("created_at", "id")
    ]
    return {
        "pair": pair,
        "consensus": getattr(pair, "consensus", None),
        "judgements": judgements,
        "adjudications": list(pair.adjudications.select_related("reviewer").order_by("-created_at", "-id")),
    }


GALLERY_OUTCOMES = tuple(Consensus.Outcome.values)


def gallery_pairs(
    *,
    task: str | None = None,
    discipline: str | None = None,
    outcome: str | None = None,
    flagged: bool = False,
) -> QuerySet[Pair]:
    """Pairs for the gallery (/curation/pairs/), newest first, with their tuple, task, consensus and a count of
    flagged judgements, in one query per page.

    ``outcome`` ``pending`` also takes pairs with no consensus row yet (never judged)."""
    flagged_count = (
        Judgement.objects.filter(pair_id=OuterRef("pk"))
        .filter(_flagged_judgements())
        .order_by()
        .values("pair_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    items = (
        Pair.objects.select_related("tuple__task__discipline", "consensus")
        .annotate(flagged=Coalesce(Subquery(flagged_count, output_field=IntegerField()), 0))
        .order_by("-id")
    )
    if task:
        items = items.filter(tuple__task__code=task)
    if discipline:
        items = items.filter(tuple__task__discipline__slug=discipline)
    if outcome == Consensus.Outcome.PENDING:
        items = items.filter(Q(consensus__isnull=True) | Q(consensus__outcome=outcome))
    elif outcome:
        items = items.filter(consensus__outcome=outcome)
    if flagged:
        items = items.filter(pk__in=_flagged_pair_ids())
    return items

"""The human experts as rows of the accuracy table: leave-one-out two-choice accuracy on a frozen version.

A judge (a scorer, an LMM) is scored against a version member's label. A human expert cannot simply be
scored the same way: their own judgement helped make most labels. :func:`human_accuracy` scores each
human judgement against a reference that does not use it (leave-one-out):

* **Items.** The version's members in the split whose ``label`` names an image: ``expected`` (the pair's
  ``image_correct`` is right) or ``other`` (its ``image_wrong`` is). Members labelled ``both`` or
  ``neither`` are not two-choice items and are skipped, and so are pairs that are gold now: their
  judgements measure annotators, not pairs, and consensus excludes them.
* **Judgements.** Every judgement that exists *now* on an item's pair (made before the version was frozen
  or after), each mapped to a label with :func:`curation.services.consensus.label_of`.
* **Reference of judgement J by annotator A**, by the member's frozen ``outcome``:

  - ``confirmed`` / ``reversed`` (a majority of judgements decided): the label held by the unique
    majority (most judgements, no tie) among the pair's *other* judgements. No other judgement, a tie,
    or a majority for ``both``/``neither`` (no image to be right about) leaves J not scored
    (``no_reference``).
  - anything else (``adjudicated``, ``imported``: a reviewer or another dataset decided, not J): the
    member's ``label``, unless A is the reviewer of the pair's latest adjudication (as it stands now),
    who would be marking their own decision: not scored (``own_adjudication``).

* **Score.** 1 when A's label equals the reference, else 0; ``both``/``neither`` against an image
  reference is 0, as it is for a two-choice judge.
* **Keys.** Each judgement counts under its pair's task: ``discipline`` (the discipline's name), ``task``
  (its code) and ``kind`` (ST/CT), as :func:`ml.core.stats.breakdown` groups them.

Per split the answer holds the pooled row (every scored judgement of every annotator, one item each), one
row per annotator (sorted by scored judgements, most first, then username), and counts of what was not
scored and why. Queries: three for the whole version (members, judgements, adjudications; ``values()``
rows), whatever its size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.db.models import Subquery

from annotation.models import Judgement
from curation.models import Adjudication, Consensus, DatasetVersion, Label, VersionMember
from curation.services.consensus import label_of
from ml.core.stats import breakdown

SPLITS = (VersionMember.Split.TEST_S, VersionMember.Split.TEST_C, VersionMember.Split.VALIDATION)
TWO_CHOICE = (Label.EXPECTED, Label.OTHER)
MAJORITY_OUTCOMES = (Consensus.Outcome.CONFIRMED, Consensus.Outcome.REVERSED)
NO_REFERENCE = "no_reference"
OWN_ADJUDICATION = "own_adjudication"

_MEMBER_FIELDS = (
    "pair_id",
    "split",
    "label",
    "outcome",
    "pair__is_gold",
    "pair__image_correct_id",
    "pair__tuple__task__code",
    "pair__tuple__task__kind",
    "pair__tuple__task__discipline__name",
)


def loo_reference(others: Counter) -> str | None:
    """The image label held by the unique majority of ``others`` (labels per count); None when there
    is no judgement, a tie at the top, or the majority says both/neither."""
    counts = [(label, count) for label, count in others.items() if count > 0]
    if not counts:
        return None
    top = max(count for _, count in counts)
    leaders = [label for label, count in counts if count == top]
    if len(leaders) != 1 or leaders[0] not in TWO_CHOICE:
        return None
    return leaders[0]


def _empty_split() -> dict[str, Any]:
    return {
        "members": 0,
        "items": 0,
        "skipped": {Label.BOTH.value: 0, Label.NEITHER.value: 0, "gold": 0},
        "judgements": 0,
        "not_scored": {NO_REFERENCE: 0, OWN_ADJUDICATION: 0},
        "rows": [],
    }


def _items(version: DatasetVersion, splits: tuple[str, ...]) -> tuple[dict[int, dict], dict[str, dict]]:
    """The two-choice members by pair id, and each split's counts of members and skipped members."""
    found = {split: _empty_split() for split in splits}
    items: dict[int, dict] = {}
    for member in VersionMember.objects.filter(version=version, split__in=splits).values(*_MEMBER_FIELDS):
        split = found[member["split"]]
        split["members"] += 1
        if member["label"] not in TWO_CHOICE:
            split["skipped"][member["label"]] += 1
        elif member["pair__is_gold"]:
            split["skipped"]["gold"] += 1
        else:
            split["items"] += 1
            items[member["pair_id"]] = member
    return items, found


def _scored_judgements(version: DatasetVersion, splits: tuple[str, ...], items: dict[int, dict]):
    """``(annotator id, username, member, score or None, why not scored or None)`` per judgement on an item."""
    pair_ids = Subquery(
        VersionMember.objects.filter(
            version=version, split__in=splits, label__in=TWO_CHOICE, pair__is_gold=False
        ).values("pair_id")
    )
    rows = Judgement.objects.filter(pair_id__in=pair_ids).values_list(
        "pair_id", "annotator_id", "annotator__username", "choice", "chosen_image_id"
    )
    by_pair: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for pair_id, annotator_id, username, choice, chosen in rows.order_by("pair_id", "id"):
        if pair_id in items:  # a member that turned gold between the two reads is skipped
            label = label_of(choice, chosen, items[pair_id]["pair__image_correct_id"])
            by_pair[pair_id].append((annotator_id, username, label))
    reviewer: dict[int, int] = {}  # the latest adjudication's reviewer, per pair
    adjudications = Adjudication.objects.filter(pair_id__in=pair_ids).order_by("pair_id", "created_at", "id")
    for pair_id, reviewer_id in adjudications.values_list("pair_id", "reviewer_id"):
        reviewer[pair_id] = reviewer_id
    for pair_id, judged in by_pair.items():
        member = items[pair_id]
        counts = Counter(label for _, _, label in judged)
        for annotator_id, username, label in judged:
            if member["outcome"] in MAJORITY_OUTCOMES:
                reference = loo_reference(counts - Counter([label]))
                why = NO_REFERENCE if reference is None else None
            else:
                reference = member["label"]
                why = OWN_ADJUDICATION if reviewer.get(pair_id) == annotator_id else None
            score = None if why else float(label == reference)
            yield annotator_id, username, member, score, why


def human_accuracy(version: DatasetVersion, splits: tuple[str, ...] = SPLITS, **kw: Any) -> dict[str, dict]:
    """The humans' leave-one-out two-choice accuracy on ``version``'s ``splits`` (the module docstring says
    exactly how each judgement is scored). ``kw`` goes to the bootstrap (``level``, ``resamples``, ``seed``).

    Returns, per split: ``members`` (all the split's members), ``items`` (two-choice members that are not
    gold), ``skipped`` (members labelled ``both``/``neither``, and ``gold`` pairs), ``judgements`` (on the
    items), ``not_scored`` (``no_reference``, ``own_adjudication``), ``pooled`` (a
    :func:`ml.core.stats.breakdown` of every judgement; ``unscored`` counts those not scored) and ``rows``:
    one ``{"id", "username", "breakdown"}`` per annotator who judged an item, most scored judgements first,
    then by username."""
    unknown = sorted(set(splits) - set(VersionMember.Split.values))
    if unknown:
        raise ValueError(f"unknown split {', '.join(unknown)}: use {', '.join(VersionMember.Split.values)}")
    splits = tuple(dict.fromkeys(splits))
    items, found = _items(version, splits)
    pooled: dict[str, list[dict]] = defaultdict(list)
    per_annotator: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for annotator_id, username, member, score, why in _scored_judgements(version, splits, items):
        split = member["split"]
        entry = {
            "score": score,
            "discipline": member["pair__tuple__task__discipline__name"],
            "task": member["pair__tuple__task__code"],
            "kind": member["pair__tuple__task__kind"],
        }
        pooled[split].append(entry)
        per_annotator[(split, annotator_id, username)].append(entry)
        found[split]["judgements"] += 1
        if why:
            found[split]["not_scored"][why] += 1
    for split, result in found.items():
        result["pooled"] = breakdown(pooled[split], **kw)
        rows = [
            {"id": annotator_id, "username": username, "breakdown": breakdown(entries, **kw)}
            for (row_split, annotator_id, username), entries in per_annotator.items()
            if row_split == split
        ]
        result["rows"] = sorted(rows, key=lambda row: (-row["breakdown"]["overall"]["n"], row["username"]))
    return found

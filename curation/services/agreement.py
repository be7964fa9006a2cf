"""Inter-annotator agreement: Krippendorff's α, Fleiss' κ, pairwise Cohen's κ, agreement with consensus.

Read-only: nothing here changes a row. The rating data are the judgements of non-gold pairs (gold
pairs measure annotators against a known answer, not against each other), each mapped to a
nominal :class:`~curation.models.Label` relative to the pair's expected image by
:func:`curation.services.consensus.label_of`, the mapping consensus uses: ``left``/``right``
become ``expected`` when the chosen image is the pair's expected-correct image and ``other``
otherwise; ``both`` and ``neither`` stay. Retired pairs count: their judgements were real.

Everything comes from **one** ``values_list()`` query over the judgements in scope (the pair's
consensus label rides along through the one-to-one join); the statistics are computed with numpy
on those arrays, per task, per discipline and overall, so the number of queries never depends on
the number of pairs. Every statistic is a dict ``{"value", "n_items", "n_judgements", "reason"}``:
``value`` is ``None`` when the statistic is undefined, and ``reason`` then says why.

The three statistics take count tables (last axis: the label), so they are tested on published
worked examples with any number of categories (tests/test_agreement.py):

* :func:`alpha_nominal` — **Krippendorff's α** (``krippendorff`` package) on every pair with at
  least two judgements (a single judgement is not pairable and adds nothing to α anyway). The
  library is given the pairs × labels count table (``value_counts``), which is exactly what it
  derives itself from the annotators × pairs reliability matrix with NaN for missing ratings;
  the counts avoid materialising that matrix, whose size is annotators × pairs.
* :func:`fleiss_modal` — **Fleiss' κ** (``statsmodels``) assumes the same number of ratings per
  item. Pairs still collecting judgements (or with another ``k``) have fewer, so κ is computed on
  the pairs with the *modal* number of ratings among those with at least two (a tie goes to the
  larger number), and ``raters_per_item`` and ``n_items_excluded`` say what was used and what was
  left out.
* :func:`cohen` — **Cohen's κ** (``statsmodels`` ``cohens_kappa``) of two annotators on the
  pairs both judged, only when they share at least ``min_shared`` pairs (``DEFAULT_MIN_SHARED``
  unless the caller says otherwise): κ on a handful of items is noise.

**Agreement with consensus** is the share of an annotator's judgements, on pairs whose
:class:`~curation.models.Consensus` has a decided label, that equal that label.

Undefined cases never raise: no pairable data, or one label used throughout (chance agreement is
then 1 and every κ and α is 0/0), give ``None`` with a reason.
"""

from __future__ import annotations

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

from annotation.models import Judgement
from curation.models import Label
from curation.services.consensus import label_of

LABELS: tuple[str, ...] = tuple(Label.values)
_CODE = {label: code for code, label in enumerate(LABELS)}
DEFAULT_MIN_SHARED = 10

_NO_PAIRABLE = "no pair has judgements from two annotators"
_ONE_LABEL = "every judgement has the same label, so agreement beyond chance is undefined"


def _statistic(value: float | None, n_items: int, n_judgements: int, reason: str | None = None, **extra) -> dict:
    return {"value": value, "n_items": n_items, "n_judgements": n_judgements, "reason": reason, **extra}


def _labels_used(counts: np.ndarray) -> int:
    """How many distinct labels occur in a count array whose last axis is the label."""
    return int(np.count_nonzero(counts.reshape(-1, counts.shape[-1]).sum(axis=0)))


def alpha_nominal(counts) -> dict:
    """Krippendorff's α (nominal) of an items × categories count table."""
    counts = np.asarray(counts)
    pairable = counts[counts.sum(axis=1) >= 2]
    n_items, n_judgements = len(pairable), int(pairable.sum())
    if not n_items:
        return _statistic(None, 0, 0, _NO_PAIRABLE)
    if _labels_used(pairable) < 2:
        return _statistic(None, n_items, n_judgements, _ONE_LABEL)
    value = krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal")
    return _statistic(float(value), n_items, n_judgements)


def fleiss_modal(counts) -> dict:
    """Fleiss' κ of an items × categories count table, on the items with the modal number of ratings."""
    counts = np.asarray(counts)
    ratings = counts.sum(axis=1)
    sizes, frequency = np.unique(ratings[ratings >= 2], return_counts=True)
    if not len(sizes):
        return _statistic(None, 0, 0, _NO_PAIRABLE, raters_per_item=None, n_items_excluded=len(counts))
    modal = int(sizes[frequency == frequency.max()].max())
    table = counts[ratings == modal]
    used = {"raters_per_item": modal, "n_items_excluded": len(counts) - len(table)}
    if _labels_used(table) < 2:
        return _statistic(None, len(table), int(table.sum()), _ONE_LABEL, **used)
    return _statistic(float(fleiss_kappa(table, method="fleiss")), len(table), int(table.sum()), **used)


def cohen(table, min_shared: int = 1) -> dict:
    """Cohen's κ of a square contingency table (rows: one annotator's labels, columns: the other's)."""
    table = np.asarray(table)
    shared, needed = int(table.sum()), max(min_shared, 1)
    if shared < needed:
        return _statistic(None, shared, 2 * shared, f"fewer than {needed} pairs judged by both")
    if _labels_used(np.stack([table, table.T])) == 1:
        return _statistic(None, shared, 2 * shared, "both annotators used one and the same label")
    return _statistic(float(cohens_kappa(table, return_results=False)), shared, 2 * shared)


def _group(pair: np.ndarray, label: np.ndarray) -> dict:
    """α and κ of one group of judgements (``pair`` and ``label`` are parallel arrays)."""
    pair_ids, item = np.unique(pair, return_inverse=True)
    counts = np.zeros((len(pair_ids), len(LABELS)), dtype=np.int64)
    np.add.at(counts, (item, label), 1)
    return {
        "n_pairs": len(pair_ids),
        "n_judgements": len(pair),
        "krippendorff_alpha": alpha_nominal(counts),
        "fleiss_kappa": fleiss_modal(counts),
    }


def _co_ratings(pair: np.ndarray, rater: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every two judgements of the same pair, as (rater a, rater b, label of a, label of b) with a < b.

    A self-join in numpy: after sorting by pair, then rater, judgements i and i + d belong to the
    same pair exactly when their pair ids are equal, for d below the largest number of ratings of a
    pair; a rater judges a pair at most once, so a < b.
    """
    order = np.lexsort((rater, pair))
    pair, rater, label = pair[order], rater[order], label[order]
    parts = [(np.empty(0, dtype=np.int64),) * 4]
    for d in range(1, int(np.unique(pair, return_counts=True)[1].max(initial=0))):
        same = pair[:-d] == pair[d:]
        parts.append((rater[:-d][same], rater[d:][same], label[:-d][same], label[d:][same]))
    return tuple(np.concatenate(column) for column in zip(*parts))


def _cohen_matrix(pair, rater, label, usernames: list[str], min_shared: int) -> dict:
    """Cohen's κ for every two annotators (symmetric; the diagonal only counts each one's judgements)."""
    n = len(usernames)
    tables = np.zeros((n, n, len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(tables, _co_ratings(pair, rater, label), 1)
    judged = np.bincount(rater, minlength=n)
    matrix = [[None] * n for _ in range(n)]
    for a in range(n):
        matrix[a][a] = _statistic(None, int(judged[a]), int(judged[a]), "the same annotator")
        for b in range(a + 1, n):
            matrix[a][b] = matrix[b][a] = cohen(tables[a, b], min_shared)
    return {"min_shared": min_shared, "annotators": usernames, "matrix": matrix}


def _with_consensus(rater, label, consensus, usernames: list[str]) -> list[dict]:
    """Per annotator: how many of their judgements on pairs with a decided consensus label match it."""
    decided = consensus >= 0
    n = len(usernames)
    judged = np.bincount(rater, minlength=n)
    on_decided = np.bincount(rater[decided], minlength=n)
    agreeing = np.bincount(rater[decided & (label == consensus)], minlength=n)
    rows = []
    for index, username in enumerate(usernames):
        total, agree = int(on_decided[index]), int(agreeing[index])
        statistic = (
            _statistic(agree / total, total, total)
            if total
            else _statistic(None, 0, 0, "none of their pairs has a decided consensus")
        )
        rows.append(
            {"annotator": username, "n_judgements": int(judged[index]), "n_agree": agree, "agreement": statistic}
        )
    return rows


def _fetch(task: str | None, discipline: str | None) -> list[tuple]:
    """The one query: a row per judgement of a non-gold pair in scope."""
    judgements = Judgement.objects.filter(pair__is_gold=False)
    if task:
        judgements = judgements.filter(pair__tuple__task__code__iexact=task)
    if discipline:
        judgements = judgements.filter(pair__tuple__task__discipline__slug__iexact=discipline)
    return list(
        judgements.order_by().values_list(
            "pair_id",
            "annotator__username",
            "choice",
            "chosen_image_id",
            "pair__image_correct_id",
            "pair__consensus__label",
            "pair__tuple__task__code",
            "pair__tuple__task__name",
            "pair__tuple__task__discipline__slug",
            "pair__tuple__task__discipline__name",
        )
    )


def _breakdown(keys: list, described: dict[str, dict], pair, label, key_name: str) -> list[dict]:
    """One group per key in ``described`` (key → the fields that describe it), sorted by key."""
    keys = np.array(keys, dtype=object)
    return [
        {key_name: key, **described[key], **_group(pair[keys == key], label[keys == key])} for key in sorted(described)
    ]


def agreement_report(
    *, task: str | None = None, discipline: str | None = None, min_shared: int = DEFAULT_MIN_SHARED
) -> dict:
    """Agreement statistics for the judgements in scope (optionally one task code and/or discipline slug).

    Returns ``overall`` and per-``tasks`` and per-``disciplines`` groups (α and Fleiss' κ, each with
    its n), the pairwise ``cohen`` matrix (annotators sorted by username) and each annotator's
    agreement with consensus (``annotators``). Judgements of tuples without a task count only overall.
    """
    rows = _fetch(task, discipline)
    usernames = sorted({row[1] for row in rows})
    rater_index = {username: index for index, username in enumerate(usernames)}
    pair = np.array([row[0] for row in rows], dtype=np.int64)
    rater = np.array([rater_index[row[1]] for row in rows], dtype=np.int64)
    label = np.array([_CODE[label_of(row[2], row[3], row[4])] for row in rows], dtype=np.int64)
    consensus = np.array([_CODE.get(row[5] or "", -1) for row in rows], dtype=np.int64)
    tasks = {row[6]: {"name": row[7], "discipline": row[8]} for row in rows if row[6] is not None}
    disciplines = {row[8]: {"name": row[9]} for row in rows if row[8] is not None}
    return {
        "filters": {"task": task or None, "discipline": discipline or None},
        "labels": list(LABELS),
        "overall": _group(pair, label),
        "tasks": _breakdown([row[6] for row in rows], tasks, pair, label, "task"),
        "disciplines": _breakdown([row[8] for row in rows], disciplines, pair, label, "discipline"),
        "cohen": _cohen_matrix(pair, rater, label, usernames, min_shared),
        "annotators": _with_consensus(rater, label, consensus, usernames),
    }

"""Inter-annotator agreement: Krippendorff's α, Fleiss' κ, pairwise Cohen's κ, agreement with consensus.

Read-only: nothing here changes a row. The rating data are the judgements of non-gold pairs (gold
pairs measure annotators against a known answer, not against each other), each mapped to a
nominal :class:`~curation.models.Label` relative to the pair's expected image by
:func:`curation.services.consensus.label_of`, the mapping consensus uses: ``left``/``right``
become ``expected`` when the chosen image is the pair's expected-correct image and ``other``
otherwise; ``both`` and ``neither`` stay. Retired pairs count: their judgements were real.

Everything comes from **one** query that aggregates in the database (:func:`_fetch_all`), so
neither the number of queries nor the number of rows fetched depends on the number of pairs. The
judgements in scope are mapped to label codes in SQL (``_LABEL_SQL``, the same mapping as
``label_of``; the pair's consensus label rides along through the one-to-one join) and folded into
three small aggregates: the pairs × labels count table of every task with identical rows merged
(α and Fleiss' κ only need the rows, not which pair each belongs to; numpy unfolds them again),
the co-ratings of every two annotators per label pair (Cohen's κ), and each annotator's labels
against the consensus label. The database still reads every judgement in scope, so the time grows
with the number of judgements, but by a database scan, not by Python work per row.
:func:`agreement_groups` gives only the α and κ groups from a lighter query (the dashboard's
need). Every statistic is a dict ``{"value", "n_items", "n_judgements", "reason"}``:
``value`` is ``None`` when the statistic is undefined, and ``reason`` then says why.

The three statistics take count tables (last axis: the label), so they are tested on published
worked examples with any number of categories (tests/curation/test_agreement.py):

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

from typing import Any

import krippendorff
import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Case, Count, F, Q, Sum, Value, When
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

from annotation.models import Discipline, Judgement, PromptTuple, Task
from curation.models import Label

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
    used: dict[str, Any] = {"raters_per_item": modal, "n_items_excluded": len(counts) - len(table)}
    if _labels_used(table) < 2:
        return _statistic(None, len(table), int(table.sum()), _ONE_LABEL, **used)
    return _statistic(float(fleiss_kappa(table, method="fleiss")), len(table), int(table.sum()), **used)


def alpha_folded(table, weight) -> dict:
    """:func:`alpha_nominal` of the count table that holds row ``i`` of ``table`` ``weight[i]`` times,
    without building it: Krippendorff's coincidence matrix is a sum over items, so identical rows
    enter once, multiplied by their number (the library's formula, ``krippendorff._coincidences``
    and ``alpha``, otherwise unchanged; tested against the library in tests/curation/test_bench_pages.py)."""
    table, weight = np.asarray(table, dtype=np.int64), np.asarray(weight, dtype=np.int64)
    ratings = table.sum(axis=1)
    keep = ratings >= 2
    table, weight, ratings = table[keep], weight[keep], ratings[keep]
    n_items, n_judgements = int(weight.sum()), int((ratings * weight).sum())
    if not n_items:
        return _statistic(None, 0, 0, _NO_PAIRABLE)
    if _labels_used(table) < 2:
        return _statistic(None, n_items, n_judgements, _ONE_LABEL)
    eye = np.eye(table.shape[1])
    unnormalised = table[:, :, np.newaxis] * table[:, np.newaxis, :] - table[:, np.newaxis, :] * eye[np.newaxis]
    observed = (unnormalised / (ratings - 1).reshape((-1, 1, 1)) * weight.reshape((-1, 1, 1))).sum(axis=0)
    n_v = observed.sum(axis=0)
    expected = (np.outer(n_v, n_v) - np.diagflat(n_v)) / (n_v.sum() - 1)
    distance = 1 - eye  # nominal
    value = 1 - (observed * distance).sum() / (expected * distance).sum()
    return _statistic(float(value), n_items, n_judgements)


def fleiss_folded(table, weight) -> dict:
    """:func:`fleiss_modal` of the count table that holds row ``i`` of ``table`` ``weight[i]`` times,
    without building it (statsmodels' ``fleiss_kappa(method="fleiss")`` with weighted sums and means)."""
    table, weight = np.asarray(table, dtype=np.int64), np.asarray(weight, dtype=np.int64)
    ratings = table.sum(axis=1)
    all_items = int(weight.sum())
    multiple = ratings >= 2
    if not multiple.any():
        return _statistic(None, 0, 0, _NO_PAIRABLE, raters_per_item=None, n_items_excluded=all_items)
    sizes = np.unique(ratings[multiple])
    frequency = np.array([weight[ratings == size].sum() for size in sizes])
    modal = int(sizes[frequency == frequency.max()].max())
    chosen = ratings == modal
    table, weight = table[chosen], weight[chosen]
    n_items = int(weight.sum())
    used: dict[str, Any] = {"raters_per_item": modal, "n_items_excluded": all_items - n_items}
    n_total = n_items * modal
    if _labels_used(table) < 2:
        return _statistic(None, n_items, n_total, _ONE_LABEL, **used)
    table = 1.0 * table
    p_cat = (table * weight[:, np.newaxis]).sum(axis=0) / n_total
    p_rat = ((table * table).sum(axis=1) - modal) / (modal * (modal - 1.0))
    p_mean = (p_rat * weight).sum() / n_items
    p_mean_exp = (p_cat * p_cat).sum()
    return _statistic(float((p_mean - p_mean_exp) / (1 - p_mean_exp)), n_items, n_total, **used)


def cohen(table, min_shared: int = 1) -> dict:
    """Cohen's κ of a square contingency table (rows: one annotator's labels, columns: the other's)."""
    table = np.asarray(table)
    shared, needed = int(table.sum()), max(min_shared, 1)
    if shared < needed:
        return _statistic(None, shared, 2 * shared, f"fewer than {needed} pairs judged by both")
    if _labels_used(np.stack([table, table.T])) == 1:
        return _statistic(None, shared, 2 * shared, "both annotators used one and the same label")
    return _statistic(float(cohens_kappa(table, return_results=False)), shared, 2 * shared)


def _cohen_matrix(co_ratings, per_annotator, index_of: dict, usernames: list[str], min_shared: int) -> dict:
    """Cohen's κ for every two annotators (symmetric; the diagonal only counts each one's judgements).

    ``co_ratings`` are ``(annotator a, annotator b, label of a, label of b, n)`` rows; the table of
    two annotators has the first by username as its rows (κ does not depend on which is which)."""
    n = len(usernames)
    tables = np.zeros((n, n, len(LABELS), len(LABELS)), dtype=np.int64)
    for a, b, label_a, label_b, count in co_ratings:
        i, j = index_of[a], index_of[b]
        if i < j:
            tables[i, j, label_a, label_b] += count
        else:
            tables[j, i, label_b, label_a] += count
    judged = np.zeros(n, dtype=np.int64)
    for annotator, _, _, count, _ in per_annotator:
        judged[index_of[annotator]] += count
    matrix: list[list[dict | None]] = [[None] * n for _ in range(n)]
    for a in range(n):
        matrix[a][a] = _statistic(None, int(judged[a]), int(judged[a]), "the same annotator")
        for b in range(a + 1, n):
            matrix[a][b] = matrix[b][a] = cohen(tables[a, b], min_shared)
    return {"min_shared": min_shared, "annotators": usernames, "matrix": matrix}


def _with_consensus(per_annotator, index_of: dict, usernames: list[str]) -> list[dict]:
    """Per annotator: how many of their judgements on pairs with a decided consensus label match it.

    ``per_annotator`` rows are ``(annotator, label, consensus label or -1, n, username)``."""
    n = len(usernames)
    judged, on_decided, agreeing = (np.zeros(n, dtype=np.int64) for _ in range(3))
    for annotator, label, consensus, count, _ in per_annotator:
        index = index_of[annotator]
        judged[index] += count
        if consensus >= 0:
            on_decided[index] += count
            if label == consensus:
                agreeing[index] += count
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


def _scope(task: str | None, discipline: str | None):
    """The judgements in scope: those of non-gold pairs, optionally of one task code and/or discipline slug."""
    judgements = Judgement.objects.filter(pair__is_gold=False)
    if task:
        judgements = judgements.filter(pair__tuple__task__code__iexact=task)
    if discipline:
        judgements = judgements.filter(pair__tuple__task__discipline__slug__iexact=discipline)
    return judgements.order_by()


def label_expression(prefix: str = "") -> Case:
    """label_of() in SQL, as a label code (index into LABELS), for the judgement at ``prefix``: both
    and neither are labels already; a chosen image is the pair's expected one or the other (no
    chosen image counts as "other", as in label_of)."""
    return Case(
        When(**{f"{prefix}choice": Label.BOTH.value}, then=Value(_CODE[Label.BOTH])),
        When(**{f"{prefix}choice": Label.NEITHER.value}, then=Value(_CODE[Label.NEITHER])),
        When(**{f"{prefix}chosen_image_id": F("pair__image_correct_id")}, then=Value(_CODE[Label.EXPECTED])),
        default=Value(_CODE[Label.OTHER]),
    )


# The pair's consensus label as a code, -1 when undecided or without a consensus row.
_CONSENSUS_SQL = Case(
    *(When(pair__consensus__label=label, then=Value(code)) for label, code in _CODE.items()), default=Value(-1)
)


def _label_counts() -> dict[str, Sum]:
    """Per label code ``c<code>``: how many of a group's judgements have that label (label_of again,
    one condition per label rather than the label code, which the database would compute four times)."""
    stated = [Label.BOTH.value, Label.NEITHER.value]
    is_expected = Q(chosen_image_id=F("pair__image_correct_id"))

    def count(*whens, default: int = 0) -> Sum:
        return Sum(Case(*whens, default=Value(default)))

    return {
        f"c{_CODE[Label.EXPECTED]}": count(When(choice__in=stated, then=Value(0)), When(is_expected, then=Value(1))),
        f"c{_CODE[Label.OTHER]}": count(
            When(choice__in=stated, then=Value(0)), When(is_expected, then=Value(0)), default=1
        ),
        f"c{_CODE[Label.BOTH]}": count(When(choice=Label.BOTH.value, then=Value(1))),
        f"c{_CODE[Label.NEITHER]}": count(When(choice=Label.NEITHER.value, then=Value(1))),
    }


def _profiles_sql(task: str | None, discipline: str | None) -> tuple[str, tuple]:
    """Pairs per (task, count per label): the pairs × labels count table of the judgements in scope
    with identical rows folded, next to the task's code and name and its discipline's slug and name.

    A pair has one task, so its row of the count table is the same in every group it is in. The
    judgements are grouped per pair first and the tuple (for its task) joined to the pairs after."""
    per_pair = _scope(task, discipline).values("pair_id", tuple=F("pair__tuple_id")).annotate(**_label_counts())
    sql, params = per_pair.query.sql_with_params()
    c = ", ".join(f"s.c{code}" for code in range(len(LABELS)))
    g = ", ".join(f"g.c{code}" for code in range(len(LABELS)))
    return (
        f"SELECT g.task_id, {g}, g.n, t.code, t.name, d.slug, d.name FROM ("
        f"SELECT u.task_id, {c}, COUNT(*) AS n FROM ({sql}) s "
        f'INNER JOIN "{PromptTuple._meta.db_table}" u ON u.id = s.tuple GROUP BY u.task_id, {c}) g '
        f'LEFT JOIN "{Task._meta.db_table}" t ON t.id = g.task_id '
        f'LEFT JOIN "{Discipline._meta.db_table}" d ON d.id = t.discipline_id'
    ), params


def _co_ratings_sql(task: str | None, discipline: str | None) -> tuple[str, tuple]:
    """``(annotator a, annotator b, label of a, label of b, n)`` over every two judgements in scope
    of the same pair, a < b by user id (a self-join through the pair)."""
    rows = (
        _scope(task, discipline)
        .filter(pair__judgements__annotator_id__gt=F("annotator_id"))
        .values(
            "annotator_id",
            other=F("pair__judgements__annotator_id"),
            lab=label_expression(),
            other_lab=label_expression("pair__judgements__"),
        )
        .annotate(n=Count("*"))
    )
    return rows.query.sql_with_params()


def _per_annotator_sql(task: str | None, discipline: str | None) -> tuple[str, tuple]:
    """``(annotator, label, consensus label or -1, n, username)`` over the judgements in scope (the
    usernames joined to the grouped rows, not to every judgement)."""
    rows = (
        _scope(task, discipline)
        .values("annotator_id", lab=label_expression(), con=_CONSENSUS_SQL)
        .annotate(n=Count("*"))
    )
    sql, params = rows.query.sql_with_params()
    user = get_user_model()
    return (
        f"SELECT a.annotator_id, a.lab, a.con, a.n, u.{connection.ops.quote_name(user.USERNAME_FIELD)} AS username "
        f'FROM ({sql}) a INNER JOIN "{user._meta.db_table}" u ON u.id = a.annotator_id'
    ), params


def fetch_profiles(task: str | None, discipline: str | None) -> list[tuple]:
    """One aggregate query: the rows of :func:`_profiles_sql`."""
    sql, params = _profiles_sql(task, discipline)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fetch_all(task: str | None, discipline: str | None) -> tuple[list, list, list]:
    """The one query of the report: three aggregates over the judgements in scope as one
    ``UNION ALL``, told apart by its first column (0 :func:`_profiles_sql`, 1
    :func:`_co_ratings_sql`, 2 :func:`_per_annotator_sql`), columns padded with NULLs.

    Nothing in the result grows with the number of pairs: at most tasks × distinct count-table rows,
    annotators² × labels² and annotators × labels × (labels + 1) rows.
    """
    ints = 1 + len(LABELS)  # integer columns before the count in a profile row: the task, a count per label
    parts = [_profiles_sql(task, discipline), _co_ratings_sql(task, discipline), _per_annotator_sql(task, discipline)]

    def nulls(k: int) -> str:
        return "".join(", NULL" for _ in range(k))

    (profiles_sql, p0), (co_sql, p1), (annotator_sql, p2) = parts
    query = (
        f"SELECT 0 AS kind, p.* FROM ({profiles_sql}) p "
        f"UNION ALL SELECT 1, c.*{nulls(ints - 4)}, NULL, NULL, NULL, NULL FROM ({co_sql}) c "
        f"UNION ALL SELECT 2, a.annotator_id, a.lab, a.con{nulls(ints - 3)}, a.n, a.username, NULL, NULL, NULL "
        f"FROM ({annotator_sql}) a"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, (*p0, *p1, *p2))
        rows = cursor.fetchall()
    n = 1 + ints
    profiles = [row[1:] for row in rows if row[0] == 0]
    co_ratings = [row[1:6] for row in rows if row[0] == 1]
    per_annotator = [(*row[1:4], row[n], row[n + 1]) for row in rows if row[0] == 2]
    return profiles, co_ratings, per_annotator


def _groups(profiles: list[tuple]) -> dict:
    """overall, tasks and disciplines (α, Fleiss' κ and their n) from the count-table rows."""
    width = len(LABELS)
    table = np.array([row[1 : 1 + width] for row in profiles], dtype=np.int64).reshape(-1, width)
    weight = np.array([row[1 + width] for row in profiles], dtype=np.int64)
    task_code = [row[2 + width] for row in profiles]
    discipline = [row[4 + width] for row in profiles]
    tasks = {
        row[2 + width]: {"name": row[3 + width], "discipline": row[4 + width]}
        for row in profiles
        if row[2 + width] is not None
    }
    disciplines = {row[4 + width]: {"name": row[5 + width]} for row in profiles if row[4 + width] is not None}

    def group(selected) -> dict:
        rows, times = table[selected], weight[selected]
        return {
            "n_pairs": int(times.sum()),
            "n_judgements": int((rows.sum(axis=1) * times).sum()),
            "krippendorff_alpha": alpha_folded(rows, times),
            "fleiss_kappa": fleiss_folded(rows, times),
        }

    codes, slugs = np.array(task_code, dtype=object), np.array(discipline, dtype=object)
    return {
        "overall": group(np.ones(len(profiles), dtype=bool)),
        "tasks": [{"task": key, **tasks[key], **group(codes == key)} for key in sorted(tasks)],
        "disciplines": [{"discipline": key, **disciplines[key], **group(slugs == key)} for key in sorted(disciplines)],
    }


def agreement_groups(*, task: str | None = None, discipline: str | None = None) -> dict:
    """Only ``overall``, ``tasks`` and ``disciplines`` of :func:`agreement_report` (the same figures),
    from one lighter aggregate query: no Cohen matrix, no agreement with consensus."""
    return _groups(fetch_profiles(task, discipline))


def agreement_report(
    *, task: str | None = None, discipline: str | None = None, min_shared: int = DEFAULT_MIN_SHARED
) -> dict:
    """Agreement statistics for the judgements in scope (optionally one task code and/or discipline slug).

    Returns ``overall`` and per-``tasks`` and per-``disciplines`` groups (α and Fleiss' κ, each with
    its n), the pairwise ``cohen`` matrix (annotators sorted by username) and each annotator's
    agreement with consensus (``annotators``). Judgements of tuples without a task count only overall.
    """
    profiles, co_ratings, per_annotator = _fetch_all(task, discipline)
    usernames = sorted({username for *_, username in per_annotator})
    index_of = {user_id: usernames.index(username) for user_id, *_, username in per_annotator}
    return {
        "filters": {"task": task or None, "discipline": discipline or None},
        "labels": list(LABELS),
        **_groups(profiles),
        "cohen": _cohen_matrix(co_ratings, per_annotator, index_of, usernames, min_shared),
        "annotators": _with_consensus(per_annotator, index_of, usernames),
    }

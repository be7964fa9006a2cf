"""What the page-performance fixes (bench/pages.py, docs/benchmarks/pages.md) must keep: the same
figures as before, and a number of queries that does not grow with the number of pairs.

Each "same as before" test compares the new query with the straightforward one it replaced, on
data where they could differ; each query-count test measures a page at two sizes.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from annotation.models import AuditEvent, Image, Judgement, Lease
from annotation.services import audit
from curation.models import Consensus
from curation.services import agreement, dashboard
from curation.services.adjudication import REVIEW_OUTCOMES, review_queue
from curation.services.consensus import label_of
from curation.views_audit import audit_filter_values
from tests.support.factories import make_image, make_pair, make_user
from tests.support.judging import judged, judged_pair

pytestmark = pytest.mark.django_db

_names = itertools.count(1)


# --- agreement: the folded count table gives the library's figures ------------------------------


def _unfold(table, weight):
    return np.repeat(np.asarray(table, dtype=np.int64).reshape(-1, 4), np.asarray(weight, dtype=np.int64), axis=0)


def _same_statistic(folded: dict, plain: dict) -> None:
    assert {k: v for k, v in folded.items() if k != "value"} == {k: v for k, v in plain.items() if k != "value"}
    if plain["value"] is None:
        assert folded["value"] is None
    else:
        assert folded["value"] == pytest.approx(plain["value"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(25))
def test_folded_alpha_and_fleiss_equal_the_library_on_the_unfolded_table(seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 12)
    # 0-4 ratings per item over 4 labels, skewed towards one label like real judgements
    sizes = rng.integers(0, 5, size=rows)
    table = np.array([rng.multinomial(size, [0.7, 0.15, 0.1, 0.05]) for size in sizes])
    weight = rng.integers(1, 40, size=rows)
    plain = _unfold(table, weight)
    _same_statistic(agreement.alpha_folded(table, weight), agreement.alpha_nominal(plain))
    _same_statistic(agreement.fleiss_folded(table, weight), agreement.fleiss_modal(plain))


@pytest.mark.parametrize(
    "table, weight",
    [
        ([[1, 0, 0, 0], [0, 1, 0, 0]], [3, 2]),  # nothing pairable
        ([[3, 0, 0, 0], [2, 0, 0, 0]], [5, 1]),  # one label throughout
        ([[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0]], [4, 4, 1]),  # tie of 3 and 2 ratings: 3 wins
        ([[3, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]], [1, 2, 7]),  # modal 2, singles left out
    ],
)
def test_folded_statistics_keep_the_undefined_cases_and_their_reasons(table, weight):
    plain = _unfold(table, weight)
    _same_statistic(agreement.alpha_folded(table, weight), agreement.alpha_nominal(plain))
    _same_statistic(agreement.fleiss_folded(table, weight), agreement.fleiss_modal(plain))


def test_the_label_in_sql_is_label_of():
    pair = make_pair("RU")
    stray = make_image(Image.Kind.UPLOADED)
    cases = [
        ("left", pair.image_correct),
        ("right", pair.image_correct),
        ("left", pair.image_wrong),
        ("right", pair.image_wrong),
        ("both", None),
        ("neither", None),
        ("left", None),
        ("right", stray),
        ("both", pair.image_correct),
    ]
    now = timezone.now()
    for choice, chosen in cases:
        user = make_user(f"label-{next(_names)}", "annotator", disciplines=["chemistry"])
        lease = Lease.objects.create(
            pair=pair,
            annotator=user,
            left_image=pair.image_correct,
            right_image=pair.image_wrong,
            state=Lease.State.JUDGED,
            expires_at=now,
        )
        Judgement.objects.create(pair=pair, annotator=user, lease=lease, choice=choice, chosen_image=chosen)
    rows = Judgement.objects.annotate(code=agreement.label_expression()).values_list(
        "choice", "chosen_image_id", "pair__image_correct_id", "code"
    )
    assert len(rows) == len(cases)
    for choice, chosen, correct, code in rows:
        assert agreement.LABELS[code] == label_of(choice, chosen, correct)
    counts = agreement.fetch_profiles(None, None)  # the count table's one row: this pair's labels
    assert [row[1:5] for row in counts] == [(2, 4, 2, 1)]  # expected, other, both, neither


# --- adjudication list: the flagged count of the subquery is the old join's -----------------------


def test_the_review_queue_counts_flagged_judgements_as_the_join_did():
    flagged = {"flag_prompt_unclear": True}
    judged_pair("expected", "other", "both")  # disputed, nothing flagged
    pair = make_pair("RU")
    from tests.support.judging import chemist, judge

    judge(chemist(), pair, "other", **flagged)
    judge(chemist(), pair, "other", flag_image_broken=True, flag_off_topic=True)
    judge(chemist(), pair, "expected")  # reversed, two flagged judgements
    judged_pair("expected", "expected", "expected")  # confirmed: not listed
    old = (
        Consensus.objects.filter(outcome__in=REVIEW_OUTCOMES)
        .annotate(
            flagged=Count(
                "pair__judgements",
                filter=(
                    Q(pair__judgements__flag_prompt_unclear=True)
                    | Q(pair__judgements__flag_image_broken=True)
                    | Q(pair__judgements__flag_off_topic=True)
                ),
            )
        )
        .order_by("updated_at", "pair_id")
    )
    expected = [(c.pair_id, c.flagged) for c in old]
    assert [(c.pair_id, c.flagged) for c in review_queue()] == expected
    assert dict(expected)[pair.pk] == 2 and len(expected) == 2
    assert review_queue().count() == 2


# --- audit log: the loose index scan lists what SELECT DISTINCT lists -----------------------------


def test_the_audit_filters_offer_the_distinct_values_in_order(admin_user):
    pair = make_pair("RU")
    for action in ("pair.touched", "adjudication.created", "pair.touched", "Zeta.upper", "a", "pair.k_changed"):
        audit.record(admin_user, action, pair)
    audit.record(admin_user, "user.ensured", admin_user)
    for field in ("action", "target_type"):
        assert audit_filter_values(field) == list(
            AuditEvent.objects.order_by(field).values_list(field, flat=True).distinct()
        )
    assert "Zeta.upper" in audit_filter_values("action")


def test_the_audit_log_needs_the_same_queries_at_two_sizes(client, admin_user, django_assert_max_num_queries):
    pair = make_pair("RU")
    actors = [make_user(f"actor-{n}", "annotator", disciplines=["chemistry"]) for n in range(3)]

    def grow(n):
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=actors[i % 3],
                    action=f"pair.bench{i % 4}",
                    target_type="pair",
                    target_id=str(pair.pk),
                    after={"n": i},
                )
                for i in range(n)
            ]
        )

    client.force_login(admin_user)
    grow(3)
    with django_assert_max_num_queries(8) as few:
        assert client.get(reverse("curation:audit")).status_code == 200
    grow(240)  # more than a page, more actors on it, more actions
    for params in ({}, {"action": "pair.bench1"}):
        with django_assert_max_num_queries(len(few.captured_queries)):
            response = client.get(reverse("curation:audit"), params)
        assert len(response.context["rows"]) == 50


# --- dashboard: the lease figures read only the rows they count -----------------------------------


def test_the_lease_figures_equal_the_aggregate_over_every_lease():
    now = timezone.now()
    pair = make_pair("RU")
    states = [
        (Lease.State.ACTIVE, now + timedelta(minutes=5), None),
        (Lease.State.ACTIVE, now - timedelta(minutes=5), None),
        (Lease.State.EXPIRED, now - timedelta(hours=2), now - timedelta(hours=1)),
        (Lease.State.EXPIRED, now - timedelta(days=3), now - timedelta(days=2)),
        (Lease.State.JUDGED, now - timedelta(hours=1), now - timedelta(hours=1)),
        (Lease.State.RELEASED, now - timedelta(minutes=1), now - timedelta(minutes=1)),
        (Lease.State.EXPIRED, now - timedelta(hours=25), None),
    ]
    for n, (state, expires, ended) in enumerate(states):
        user = make_user(f"leaser-{n}", "annotator", disciplines=["chemistry"])
        Lease.objects.create(
            pair=pair,
            annotator=user,
            left_image=pair.image_correct,
            right_image=pair.image_wrong,
            state=state,
            expires_at=expires,
            ended_at=ended,
        )
    active = Q(state=Lease.State.ACTIVE)
    old = Lease.objects.order_by().aggregate(
        live=Count("id", filter=active & Q(expires_at__gt=now)),
        expired_unreclaimed=Count("id", filter=active & Q(expires_at__lte=now)),
        reclaimed_24h=Count("id", filter=Q(state=Lease.State.EXPIRED, ended_at__gte=now - timedelta(hours=24))),
    )
    assert old == {"live": 1, "expired_unreclaimed": 1, "reclaimed_24h": 1}
    assert dashboard.lease_counts(None, now) == old
    assert dashboard.lease_counts("chemistry", now) == old
    assert dashboard.lease_counts("physics", now) == {"live": 0, "expired_unreclaimed": 0, "reclaimed_24h": 0}


# --- version builder: the preview needs the same queries at two sizes -----------------------------


def test_the_builder_preview_needs_the_same_queries_at_two_sizes(client, admin_user, django_assert_max_num_queries):
    client.force_login(admin_user)
    params = {"preview": "1", "outcomes": ["confirmed", "reversed"]}
    judged("expected", "expected", "expected")
    with django_assert_max_num_queries(12) as few:
        page = client.post("/curation/versions/new/", params).content.decode()
    assert "1 pair match" in page
    for task in ("RU", "BU", "IM"):
        judged("other", "other", "expected", task=task)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.post("/curation/versions/new/", params).content.decode()
    assert "4 pairs match" in page and 'data-task="IM"' in page


# --- the benchmark's verdicts ---------------------------------------------------------------------


def test_the_benchmark_flags_pages_over_budget_or_growing():
    from bench import pages

    args = pages.parse_args(["--quick", "--sizes", "10,100"])

    def row(ms, queries):
        return {"median_ms": ms, "queries": queries}

    results = {
        "login (baseline)": {"sizes": {10: row(2.0, 0), 100: row(2.0, 0)}},
        "flat": {"sizes": {10: row(50.0, 5), 100: row(60.0, 5)}},
        "tiny noise": {"sizes": {10: row(2.0, 3), 100: row(5.0, 3)}},
        "grows": {"sizes": {10: row(20.0, 5), 100: row(90.0, 5)}},
        "slow": {"sizes": {10: row(250.0, 5), 100: row(260.0, 5)}},
        "more queries": {"sizes": {10: row(20.0, 5), 100: row(20.0, 6)}},
    }
    pages.judge(results, args)
    assert {name: result["verdict"] for name, result in results.items()} == {
        "login (baseline)": "ok",
        "flat": "ok",
        "tiny noise": "ok",
        "grows": "time grows",
        "slow": "over budget",
        "more queries": "queries grow",
    }
    assert results["grows"]["growth_vs_baseline"] == 4.5

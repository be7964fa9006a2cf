"""The admin dashboard (/curation/dashboard/, curation.services.dashboard): the numbers on a small
hand-built dataset (every judgement through the real queue), who may see it, the filters, the SVG
charts, and a number of queries that does not grow with pairs, annotators or days."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Judgement, Lease
from annotation.services import catalog, queue
from curation.services import gold
from curation.services.agreement import agreement_report
from curation.services.dashboard import dashboard
from curation.views_dashboard import sparkline, stacked
from tests.support.factories import make_pair, make_user
from tests.support.judging import chemist, judge, judged_pair

pytestmark = pytest.mark.django_db

PAGE = "curation:dashboard"
_names = itertools.count(1)


def restricted(task: str):
    """An annotator who may only judge one task (so an in-progress pair is the only one open to them)."""
    return make_user(f"only-{task.lower()}-{next(_names)}", "annotator", tasks=[task])


def physicist():
    return make_user(f"phys-{next(_names)}", "annotator", disciplines=["physics"])


@pytest.fixture
def dataset(settings, admin_user):
    """Chemistry (RU, IM), one physics pair (GR) and a gold pair (FR). Complete pairs are judged
    first so that the pair a new annotator gets is always the one meant.

    ===== ======================================= ===================================
    task  pair                                    outcome
    ===== ======================================= ===================================
    FR    gold, judged right by g1, wrong by g2   (gold: not counted)
    RU    expected ×3                             confirmed
    RU    other, other, expected                  reversed
    RU    expected, other, both                   disputed
    IM    other ×3                                reversed
    IM    expected ×3                             confirmed
    GR    expected ×3 (physicists)                confirmed
    RU    expected (1 of 3)                       pending
    IM    expected, expected (2 of 3)             pending
    RU    ×2, IM ×1 without judgements            pending
    RU    retired without judgements              pending (not in progress figures)
    ===== ======================================= ===================================
    """
    settings.GOLD_RATE = 0
    settings.GOLD_MIN_ITEMS = 1
    gold_pair = make_pair("FR")
    gold.mark_gold(admin_user, gold_pair.id, "expected")
    g1, g2 = chemist(), chemist()
    judge(g1, gold_pair, "expected")
    judge(g2, gold_pair, "other")  # 0 of 1 right: flagged (GOLD_MIN_ITEMS = 1)

    judged_pair("expected", "expected", "expected", task="RU")
    judged_pair("other", "other", "expected", task="RU")
    judged_pair("expected", "other", "both", task="RU")
    judged_pair("other", "other", "other", task="IM")
    judged_pair("expected", "expected", "expected", task="IM")
    physics = make_pair("GR")
    for _ in range(3):
        judge(physicist(), physics, "expected")

    ru_partial = make_pair("RU")
    judge(restricted("RU"), ru_partial, "expected")
    im_partial = make_pair("IM")
    judge(restricted("IM"), im_partial, "expected")
    judge(restricted("IM"), im_partial, "expected")

    make_pair("RU"), make_pair("RU"), make_pair("IM")
    catalog.set_pair_retired(make_pair("RU").id, True)
    return {"g1": g1, "g2": g2}


def rows(board) -> dict:
    return {row.code: row for row in board.tasks}


# --- Numbers ---------------------------------------------------------------------------------


def test_it_counts_progress_per_task(dataset):
    tasks = rows(dashboard())
    ru, im, gr, fr = tasks["RU"], tasks["IM"], tasks["GR"], tasks["FR"]
    assert (ru.pairs, ru.judged_to_k, ru.in_progress, ru.to_go) == (6, 3, 1, 2)
    assert (ru.judgements, ru.wanted, ru.open_unjudged) == (10, 18, 2)
    assert (im.pairs, im.judged_to_k, im.in_progress, im.to_go) == (4, 2, 1, 1)
    assert (im.judgements, im.wanted, im.open_unjudged) == (8, 12, 1)
    assert (gr.pairs, gr.judged_to_k, gr.judgements, gr.wanted) == (1, 1, 3, 3)
    assert (fr.pairs, fr.judgements) == (0, 0), "gold pairs are outside progress"
    assert len(tasks) == 16, "every task is listed, with or without pairs"


def test_it_adds_up_the_totals(dataset):
    totals = dashboard().totals
    assert (totals.pairs, totals.judged_to_k, totals.in_progress, totals.to_go) == (11, 6, 2, 3)
    assert (totals.judgements, totals.wanted, totals.open_unjudged) == (21, 33, 3)


def test_it_counts_the_outcome_mix_per_task_retired_pairs_included(dataset):
    tasks = rows(dashboard())
    assert tasks["RU"].outcomes == {
        "confirmed": 1,
        "adjudicated": 0,
        "reversed": 1,
        "rejected": 0,
        "disputed": 1,
        "pending": 4,
    }
    assert tasks["IM"].outcomes == {
        "confirmed": 1,
        "adjudicated": 0,
        "reversed": 1,
        "rejected": 0,
        "disputed": 0,
        "pending": 2,
    }
    assert tasks["FR"].outcome_total == 0


def test_it_takes_agreement_per_task_from_the_agreement_service(dataset):
    tasks = rows(dashboard())
    for code, n_alpha, n_fleiss in (("RU", 3, 3), ("IM", 3, 2)):
        [expected] = agreement_report(task=code)["tasks"]
        assert tasks[code].alpha == expected["krippendorff_alpha"]
        assert tasks[code].fleiss == expected["fleiss_kappa"]
        assert (tasks[code].alpha["n_items"], tasks[code].fleiss["n_items"]) == (n_alpha, n_fleiss)
    assert tasks["LR"].alpha is None, "no judgements, no figure"


def test_it_ranks_the_hardest_tasks(dataset):
    board = dashboard()
    assert [row.code for row in board.most_reversed] == ["RU", "IM"]  # RU also has a disputed pair
    lowest = board.lowest_agreement
    assert [row.code for row in lowest] == sorted((r.code for r in lowest), key=lambda c: rows(board)[c].alpha_value)
    assert lowest[0].code == "RU"
    assert all(row.alpha_value is not None for row in lowest)


def test_it_counts_throughput_per_annotator_per_day(dataset):
    now = timezone.now()
    [moved] = Judgement.objects.filter(annotator=dataset["g1"])
    Judgement.objects.filter(pk=moved.pk).update(created_at=now - timedelta(days=3))
    old = Judgement.objects.filter(pair__tuple__task__code="IM").exclude(annotator__username__startswith="only").first()
    Judgement.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=20))

    board = dashboard(now=now)
    assert len(board.days) == 14 and board.days[-1] == timezone.localdate(now)
    per_user = {row.username: row for row in board.throughput}
    assert per_user[dataset["g1"].username].per_day == [0] * 10 + [1, 0, 0, 0]
    assert old.annotator.username not in per_user, "judged 20 days ago only"
    assert sum(board.throughput_per_day) == Judgement.objects.count() - 1
    assert board.throughput_per_day[-1] == Judgement.objects.count() - 2

    month = dashboard(now=now, days=30)
    assert sum(month.throughput_per_day) == Judgement.objects.count()
    assert {row.username: row.total for row in month.throughput}[old.annotator.username] == 1


def test_it_reports_gold_accuracy_with_the_flagged_first(dataset):
    quality = dashboard().quality
    assert [(q["username"], q["judged"], q["correct"], q["accuracy"], q["flagged"]) for q in quality] == [
        (dataset["g2"].username, 1, 0, 0.0, True),
        (dataset["g1"].username, 1, 1, 1.0, False),
    ]


def test_it_reports_queue_health(dataset):
    live = queue.next_lease(chemist())
    reclaimed = queue.next_lease(chemist())
    Lease.objects.filter(pk=reclaimed.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert queue.reclaim_expired_leases() == 1
    long_ago = queue.next_lease(chemist())
    Lease.objects.filter(pk=long_ago.pk).update(
        state=Lease.State.EXPIRED, ended_at=timezone.now() - timedelta(hours=25)
    )
    stale = queue.next_lease(chemist())
    Lease.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    assert live and reclaimed and stale
    assert dashboard().leases == {"live": 1, "expired_unreclaimed": 1, "reclaimed_24h": 1}
    assert dashboard(discipline="physics").leases == {"live": 0, "expired_unreclaimed": 0, "reclaimed_24h": 0}


def test_it_narrows_everything_but_gold_accuracy_to_a_discipline(dataset):
    board = dashboard(discipline="physics")
    assert [row.code for row in board.tasks][:1] and {row.code for row in board.tasks} == {
        "GR",
        "SO",
        "ME",
        "AB",
        "BU",
        "DI",
        "EL",
        "EV",
        "LI",
    }
    assert (board.totals.pairs, board.totals.judgements) == (1, 3)
    assert {row.username for row in board.throughput} == set(
        Judgement.objects.filter(pair__tuple__task__code="GR").values_list("annotator__username", flat=True)
    )
    assert board.agreement_overall["n_pairs"] == 1
    assert len(board.quality) == 2
    assert board.most_reversed == []


def test_it_refuses_days_outside_1_to_90():
    with pytest.raises(ValueError):
        dashboard(days=0)
    with pytest.raises(ValueError):
        dashboard(days=91)


# --- Geometry --------------------------------------------------------------------------------


def test_it_stacks_bar_segments_to_100_percent_leaving_out_empty_parts():
    segments = stacked([("a", "A", 1), ("b", "B", 0), ("c", "C", 3)])
    assert [(s["key"], s["x"], s["width"]) for s in segments] == [("a", 0, 25.0), ("c", 25.0, 75.0)]
    assert stacked([("a", "A", 0)]) == []


def test_it_draws_sparklines_on_one_scale_and_keeps_small_days_visible():
    spark = sparkline([0, 1, 100], ["d1", "d2", "d3"], scale=100)
    assert [b["height"] for b in spark["bars"]] == [0, 1, 24]
    assert spark["bars"][2]["y"] == 0 and spark["width"] == 30
    assert [b["height"] for b in sparkline([0, 0], ["d1", "d2"], scale=0)["bars"]] == [0, 0]


# --- The page --------------------------------------------------------------------------------


def test_it_sends_anonymous_users_to_login(client):
    response = client.get(reverse(PAGE))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_it_refuses_everyone_but_admins(client, who, request):
    client.force_login(request.getfixturevalue(who))
    response = client.get(reverse(PAGE))
    assert response.status_code == 403
    assert b"Only admins" in response.content


def test_it_answers_get_only(client, admin_user):
    client.force_login(admin_user)
    assert client.post(reverse(PAGE)).status_code == 405


def test_it_renders_the_figures_and_svg_charts(client, admin_user, dataset):
    client.force_login(admin_user)
    response = client.get(reverse(PAGE))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/curation/dashboard/"' in html, "the admin nav links here"
    # Charts are server-drawn SVG: the only script is the site-wide static/js/app.js (keyboard-scrollable tables).
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/js/app.js" defer>']
    assert "http://" not in html and "https://" not in html
    for section in ("summary", "queue-health", "progress", "outcomes", "throughput", "agreement", "hardest", "gold"):
        assert f'id="{section}"' in html
    # one progress and one outcome bar per task (+ the progress total), a sparkline per annotator + everyone,
    # one accuracy bar per annotator with gold judgements
    n_annotators = len(response.context["throughput"])
    assert html.count('class="hbar"') == 16 + 1 + 16 + 2
    assert html.count('class="spark') == n_annotators + 1
    assert 'aria-label="RU progress, 6 pairs: 3 judged to k, 1 in progress, 2 to go"' in html
    assert 'aria-label="RU outcomes, 7 pairs: 1 confirmed, 1 reversed, 1 disputed, 4 pending"' in html
    ru = re.search(r'<tr data-task="RU">.*?</tr>', html, re.S).group(0)
    assert '<td class="num" data-col="judgements">10 / 18' in ru
    assert re.search(r'<rect class="seg-judged_to_k" x="0.0%" y="0" width="50.0%"', ru), "3 of 6 pairs: half the bar"
    assert 'class="flagged"' in html and "flagged " in html
    assert re.search(r'data-figure="open_unjudged"><dt>[^<]*</dt><dd>3</dd>', html)


def test_it_applies_the_filters_and_shows_bad_values_as_errors(client, admin_user, dataset):
    client.force_login(admin_user)
    response = client.get(reverse(PAGE), {"discipline": "physics", "days": "30"})
    assert response.context["days"] == 30 and len(response.context["board"].days) == 30
    assert "Physics · throughput over the last 30 days" in response.content.decode()
    assert {t["row"].code for t in response.context["tasks"]} >= {"GR"} and "RU" not in {
        t["row"].code for t in response.context["tasks"]
    }
    for bad in ("0", "91", "x"):
        response = client.get(reverse(PAGE), {"days": bad})
        assert response.status_code == 200 and response.context["days"] == 14
        assert response.context["form"].errors["days"]
    response = client.get(reverse(PAGE), {"discipline": "astrology"})
    assert response.status_code == 200 and response.context["board"].discipline is None
    assert response.context["form"].errors["discipline"]


def _grow(n_pairs: int, days_back: int):
    """More pairs judged by new annotators, spread over more days."""
    now = timezone.now()
    for n in range(n_pairs):
        pair = judged_pair("expected", "other", "expected", task="RU" if n % 2 else "IM")
        Judgement.objects.filter(pair=pair).update(created_at=now - timedelta(days=n % days_back))


def test_it_needs_the_same_number_of_queries_whatever_the_size(
    client, admin_user, settings, django_assert_max_num_queries
):
    settings.GOLD_RATE = 0
    client.force_login(admin_user)
    _grow(1, 1)
    with django_assert_max_num_queries(12) as few:
        assert client.get(reverse(PAGE)).status_code == 200
    _grow(8, 8)
    judge(chemist(), make_pair("RU"), "expected")
    with django_assert_max_num_queries(12) as many:
        response = client.get(reverse(PAGE), {"days": "10"})
    assert response.context["board"].totals.pairs == 10
    assert len(response.context["throughput"]) == 3 + 8 * 3 + 1
    assert len(many.captured_queries) == len(few.captured_queries)

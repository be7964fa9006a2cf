"""Read-only figures for the admin dashboard (/curation/dashboard/).

Every figure comes from a fixed number of aggregate queries, whatever the number of pairs,
judgements, annotators or days: grouped counts (``values().annotate()`` with conditional
``Count(filter=Q(...))``), never a query or a Python loop per row.

=================  ======================================================================
query              what
=================  ======================================================================
tasks              the tasks in scope (at most a few dozen rows)
pairs per task     progress (judged to k / in progress / to go, judgements vs sum of k),
                   outcome mix (consensus outcome per pair; no consensus row = pending),
                   open pairs without judgements
throughput         judgements per annotator per day in the window
agreement          :func:`curation.services.agreement.agreement_groups`: one aggregate query for
                   all tasks (α and κ per task from the folded count table, with numpy)
quality            gold accuracy per annotator (:class:`~curation.models.AnnotatorQuality`)
leases             live / expired-but-unreclaimed / reclaimed in the last 24 h
=================  ======================================================================

Definitions:

* **progress** counts non-gold pairs that are not retired: *judged to k* has
  ``judgement_count >= k``, *in progress* has some judgements but fewer than k, *to go* none;
  *wanted* is the sum of k over those pairs and *judgements* the sum of ``judgement_count``.
* the **outcome mix** counts every non-gold pair of the task (retired ones included: their
  judgements and consensus were real), by its consensus outcome.
* **throughput** counts every judgement (gold ones included: they are work too) by the local
  calendar day of ``created_at``; the window is today and the ``days - 1`` days before it.
* a lease is **live** while ``active`` and unexpired; **expired, not reclaimed** while still
  ``active`` past ``expires_at``; **reclaimed** once marked ``expired`` (``ended_at`` within 24 h).
* the ``discipline`` filter narrows everything but gold accuracy, which is kept per annotator
  over all their gold judgements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotation.models import Judgement, Lease, Pair, Task
from curation.models import AnnotatorQuality, Consensus, Job
from curation.services.agreement import agreement_groups

DEFAULT_DAYS = 14
MAX_DAYS = 90
HARDEST = 5  # rows in each "hardest tasks" list

# Outcomes in the order the outcome-mix bars stack them (pending last).
OUTCOMES: tuple[str, ...] = (
    Consensus.Outcome.CONFIRMED,
    Consensus.Outcome.ADJUDICATED,
    Consensus.Outcome.REVERSED,
    Consensus.Outcome.REJECTED,
    Consensus.Outcome.DISPUTED,
    Consensus.Outcome.PENDING,
)


@dataclass
class TaskRow:
    code: str
    name: str
    discipline: str
    # progress (non-gold, not retired)
    pairs: int = 0
    judged_to_k: int = 0
    in_progress: int = 0
    to_go: int = 0
    judgements: int = 0
    wanted: int = 0
    open_unjudged: int = 0
    # outcome mix (non-gold, retired included)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    # agreement (from the agreement service; None when undefined or no judgements)
    alpha: dict | None = None
    fleiss: dict | None = None

    @property
    def percent_done(self) -> int:
        return round(100 * self.judged_to_k / self.pairs) if self.pairs else 0

    @property
    def percent_judgements(self) -> int:
        return round(100 * self.judgements / self.wanted) if self.wanted else 0

    @property
    def outcome_total(self) -> int:
        return sum(self.outcomes.values())

    @property
    def reversed(self) -> int:
        return self.outcomes[Consensus.Outcome.REVERSED]

    @property
    def disputed(self) -> int:
        return self.outcomes[Consensus.Outcome.DISPUTED]

    @property
    def decided(self) -> int:
        return self.outcome_total - self.outcomes[Consensus.Outcome.PENDING]

    @property
    def alpha_value(self) -> float | None:
        return self.alpha["value"] if self.alpha else None


@dataclass
class AnnotatorThroughput:
    username: str
    per_day: list[int]

    @property
    def total(self) -> int:
        return sum(self.per_day)

    @property
    def best(self) -> int:
        return max(self.per_day, default=0)

    @property
    def active_days(self) -> int:
        return sum(1 for n in self.per_day if n)


@dataclass
class Dashboard:
    discipline: str | None
    days: list[date]
    tasks: list[TaskRow]
    throughput: list[AnnotatorThroughput]
    quality: list[dict]
    leases: dict[str, int]
    agreement_overall: dict
    now: datetime

    @property
    def totals(self) -> TaskRow:
        total = TaskRow(code="", name="All tasks", discipline="")
        for row in self.tasks:
            for name in ("pairs", "judged_to_k", "in_progress", "to_go", "judgements", "wanted", "open_unjudged"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
            for outcome, n in row.outcomes.items():
                total.outcomes[outcome] += n
        return total

    @property
    def throughput_per_day(self) -> list[int]:
        return [sum(column) for column in zip(*(row.per_day for row in self.throughput), strict=True)] or [0] * len(
            self.days
        )

    @property
    def lowest_agreement(self) -> list[TaskRow]:
        """Tasks with a defined α, lowest first."""
        rated = [row for row in self.tasks if row.alpha_value is not None]
        return sorted(rated, key=lambda row: (row.alpha_value, row.code))[:HARDEST]

    @property
    def most_reversed(self) -> list[TaskRow]:
        """Tasks with reversed or disputed pairs, most reversals first (then most disputes)."""
        troubled = [row for row in self.tasks if row.reversed or row.disputed]
        return sorted(troubled, key=lambda row: (-row.reversed, -row.disputed, row.code))[:HARDEST]


def _window(days: int, now: datetime) -> tuple[list[date], datetime]:
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    return [first + timedelta(days=n) for n in range(days)], timezone.make_aware(datetime.combine(first, time.min))


def _pair_figures(discipline: str | None) -> dict[int, Mapping[str, Any]]:
    """One grouped query over non-gold pairs: progress and outcome counts per task id."""
    live = ~Q(status=Pair.Status.RETIRED)
    outcome = {
        f"outcome_{name}": Count("id", filter=Q(consensus__outcome=name))
        for name in OUTCOMES
        if name != Consensus.Outcome.PENDING
    }
    pairs = Pair.objects.filter(is_gold=False, tuple__task__isnull=False)
    if discipline:
        pairs = pairs.filter(tuple__task__discipline__slug__iexact=discipline)
    rows = (
        pairs.order_by()
        .values(task_id=F("tuple__task_id"))
        .annotate(
            all_pairs=Count("id"),
            pairs=Count("id", filter=live),
            judged_to_k=Count("id", filter=live & Q(judgement_count__gte=F("k"))),
            in_progress=Count("id", filter=live & Q(judgement_count__gt=0, judgement_count__lt=F("k"))),
            to_go=Count("id", filter=live & Q(judgement_count=0)),
            # not `judgements`: that name is Pair's reverse relation to its judgements
            judgement_total=Sum("judgement_count", filter=live, default=0),
            wanted=Sum("k", filter=live, default=0),
            open_unjudged=Count("id", filter=Q(status=Pair.Status.OPEN, judgement_count=0)),
            **outcome,
        )
    )
    return {row["task_id"]: row for row in rows}


def _throughput(discipline: str | None, days: list[date], since: datetime) -> list[AnnotatorThroughput]:
    judgements = Judgement.objects.filter(created_at__gte=since)
    if discipline:
        judgements = judgements.filter(pair__tuple__task__discipline__slug__iexact=discipline)
    rows = (
        judgements.order_by()
        .annotate(day=TruncDate("created_at"))
        .values("annotator__username", "day")
        .annotate(n=Count("id"))
        .values_list("annotator__username", "day", "n")
    )
    index = {day: n for n, day in enumerate(days)}
    per_annotator: dict[str, list[int]] = {}
    for username, day, n in rows:  # one row per (annotator, day) with judgements, not per judgement
        if day in index:
            per_annotator.setdefault(username, [0] * len(days))[index[day]] += n
    return [AnnotatorThroughput(username, per_annotator[username]) for username in sorted(per_annotator)]


def _quality() -> list[dict]:
    rows = (
        AnnotatorQuality.objects.filter(gold_judged__gt=0)
        .order_by("-flagged", "user__username")
        .values("user__username", "gold_judged", "gold_correct", "flagged", "flagged_at")
    )
    return [
        {
            "username": row["user__username"],
            "judged": row["gold_judged"],
            "correct": row["gold_correct"],
            "accuracy": row["gold_correct"] / row["gold_judged"],
            "flagged": row["flagged"],
            "flagged_at": row["flagged_at"],
        }
        for row in rows
    ]


def lease_counts(discipline: str | None, now: datetime) -> dict[str, int]:
    """Live, expired-but-unreclaimed and recently reclaimed leases, optionally of one discipline."""
    leases = Lease.objects.all()
    if discipline:
        leases = leases.filter(pair__tuple__task__discipline__slug__iexact=discipline)
    active = Q(state=Lease.State.ACTIVE)
    reclaimed = Q(state=Lease.State.EXPIRED, ended_at__gte=now - timedelta(hours=24))
    # Only the rows some count needs (active leases, leases reclaimed in the last 24 h), found through
    # the (state, expires_at) and (state, ended_at) indexes: judged and skipped leases pile up with
    # the data, these do not.
    return (
        leases.filter(active | reclaimed)
        .order_by()
        .aggregate(
            live=Count("id", filter=active & Q(expires_at__gt=now)),
            expired_unreclaimed=Count("id", filter=active & Q(expires_at__lte=now)),
            reclaimed_24h=Count("id", filter=reclaimed),
        )
    )


def dashboard(*, discipline: str | None = None, days: int = DEFAULT_DAYS, now: datetime | None = None) -> Dashboard:
    """All figures of the dashboard, for one discipline slug or all, throughput over ``days`` days."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    now = now or timezone.now()
    window, since = _window(days, now)

    tasks = Task.objects.order_by("discipline__name", "code")
    if discipline:
        tasks = tasks.filter(discipline__slug__iexact=discipline)
    figures = _pair_figures(discipline)
    report = agreement_groups(discipline=discipline or None)
    agreement = {row["task"]: row for row in report["tasks"]}

    rows = []
    for task_id, code, name, discipline_name in tasks.values_list("id", "code", "name", "discipline__name"):
        row = TaskRow(code=code, name=name, discipline=discipline_name)
        counts = figures.get(task_id)
        if counts:
            for attr in ("pairs", "judged_to_k", "in_progress", "to_go", "wanted", "open_unjudged"):
                setattr(row, attr, counts[attr])
            row.judgements = counts["judgement_total"]
            for outcome in OUTCOMES[:-1]:
                row.outcomes[outcome] = counts[f"outcome_{outcome}"]
            row.outcomes[Consensus.Outcome.PENDING] = counts["all_pairs"] - sum(row.outcomes.values())
        if code in agreement:
            row.alpha = agreement[code]["krippendorff_alpha"]
            row.fleiss = agreement[code]["fleiss_kappa"]
        rows.append(row)

    return Dashboard(
        discipline=discipline or None,
        days=window,
        tasks=rows,
        throughput=_throughput(discipline, window, since),
        quality=_quality(),
        leases=lease_counts(discipline, now),
        agreement_overall=report["overall"],
        now=now,
    )


# --- Read functions of the staff home page (config/home.py) ------------------------------------------------

RECENT_JOBS = 5


def home_figures(now: datetime | None = None) -> dict[str, int]:
    """The admin home's headline figures in two aggregate queries: non-gold live pairs (judged to k, in
    progress, to go), judgements today, live leases."""
    now = now or timezone.now()
    live = Q(is_gold=False) & ~Q(status=Pair.Status.RETIRED)
    pairs = Pair.objects.filter(live).aggregate(
        pairs=Count("id"),
        judged_to_k=Count("id", filter=Q(judgement_count__gte=F("k"))),
        in_progress=Count("id", filter=Q(judgement_count__gt=0, judgement_count__lt=F("k"))),
        to_go=Count("id", filter=Q(judgement_count=0)),
    )
    today = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    judged_today = Judgement.objects.filter(created_at__gte=today).count()
    return {**pairs, "judged_today": judged_today, "live_leases": lease_counts(None, now)["live"]}


def recent_jobs(kind: str, limit: int = RECENT_JOBS) -> list[Job]:
    """The latest import or export jobs, newest first, with who started them (one query)."""
    return list(Job.objects.filter(kind=kind).select_related("created_by").order_by("-created_at", "-id")[:limit])

"""Helpers of the reliability tests (tests/system/test_reliability_*.py): annotators with API tokens,
one database connection per thread, what the clients saw (:class:`Tally`), a sampler of the
invariants while they run (:class:`Monitor`) and the end-state check (:func:`check_end_state`)."""

from __future__ import annotations

import threading
import time
from collections import Counter

from django.conf import settings
from django.db import OperationalError, connection, connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Judgement, Pair
from curation.models import Consensus
from tests.support.factories import make_user

CHOICES = ("left", "right", "both", "neither")


# --- annotators, clients and the end-state check ----------------------------------------------------


def annotators(prefix: str, n: int) -> list:
    """``n`` chemistry annotators, each with an API token (``user.token``)."""
    users = []
    for i in range(n):
        user = make_user(f"{prefix}{i}", disciplines=["chemistry"])
        user.token = Token.objects.create(user=user).key
        users.append(user)
    return users


def connect() -> None:
    """Open this thread's connection, waiting while the server is at max_connections (other test
    runs share it): a refused connection is the environment, not the queue."""
    for _ in range(100):
        try:
            connection.ensure_connection()
            return
        except OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            time.sleep(0.1)
    connection.ensure_connection()


def client_of(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.token}")
    return client


def judge(client, lease_id: int, choice: str):
    return client.post(f"/api/leases/{lease_id}/judgement/", {"choice": choice}, format="json")


def refusal(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("code"), body.get("detail")


class Tally:
    """What the clients saw, collected across threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = Counter()
        self.accepted: dict[int, tuple] = {}  # judgement id -> (annotator id, lease id, choice) from 201s
        self.repeats: list[tuple[int, dict, dict]] = []  # (judgement id, first body, repeat body)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def created(self, user, lease_id: int, choice: str, body: dict) -> None:
        with self.lock:
            self.counts["submits_201"] += 1
            assert body["judgement_id"] not in self.accepted, "two 201s for one judgement"
            self.accepted[body["judgement_id"]] = (user.id, lease_id, choice)


class Monitor(threading.Thread):
    """Samples the database while the annotators run: no pair with judgements + live leases over
    k, and no counter different from its rows (each check is one statement, so one snapshot)."""

    SQL = (
        "SELECT COUNT(*) FILTER (WHERE p.judgement_count + (SELECT COUNT(*) FROM annotation_lease l "
        "WHERE l.pair_id = p.id AND l.state = 'active' AND l.expires_at > now()) > p.k), "
        "COUNT(*) FILTER (WHERE p.judgement_count <> (SELECT COUNT(*) FROM annotation_judgement j "
        "WHERE j.pair_id = p.id)) FROM annotation_pair p WHERE NOT p.is_gold"
    )

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.stop = interval, threading.Event()
        self.samples = self.over_k = self.counter_mismatch = 0

    def run(self):
        try:
            connect()
            while not self.stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(self.SQL)
                    over, mismatch = cursor.fetchone()
                self.samples, self.over_k, self.counter_mismatch = (
                    self.samples + 1,
                    self.over_k + over,
                    self.counter_mismatch + mismatch,
                )
                self.stop.wait(self.interval)
        finally:
            connections.close_all()

    def finish(self) -> Monitor:
        self.stop.set()
        self.join(timeout=30)
        return self


def expected_consensus(pair: Pair, judgements: list[Judgement]) -> tuple[str, str, dict]:
    """The consensus of ``judgements`` worked out here from the rules in the README, not by the
    service: (outcome, label, counts per label)."""
    labels = Counter()
    for j in judgements:
        if j.choice in ("left", "right"):
            labels["expected" if j.chosen_image_id == pair.image_correct_id else "other"] += 1
        else:
            labels[j.choice] += 1
    n = sum(labels.values())
    if n < pair.k:
        return "pending", "", dict(labels)
    label, top = labels.most_common(1)[0]
    if list(labels.values()).count(top) == 1 and top / n >= settings.CONSENSUS_MIN_SHARE:
        return {"expected": "confirmed", "other": "reversed"}.get(label, "rejected"), label, dict(labels)
    return "disputed", "", dict(labels)


def check_end_state(pair_ids, *, exactly_k: bool = True) -> dict:
    """Everything that must hold once the annotators are done; returns what was counted."""
    judgements = list(Judgement.objects.filter(pair_id__in=pair_ids).select_related("lease"))
    by_pair: dict[int, list[Judgement]] = {}
    for j in judgements:
        by_pair.setdefault(j.pair_id, []).append(j)
    twice = Counter((j.pair_id, j.annotator_id) for j in judgements)
    assert max(twice.values(), default=1) == 1, "an annotator judged a pair twice"
    for j in judgements:  # every judgement came through a lease of its own annotator, on its pair
        assert (j.lease.annotator_id, j.lease.pair_id, j.lease.state) == (j.annotator_id, j.pair_id, "judged")
        side = {"left": j.lease.left_image_id, "right": j.lease.right_image_id}.get(j.choice)
        assert j.chosen_image_id == side
    outcomes = Counter()
    consensus = {c.pair_id: c for c in Consensus.objects.filter(pair_id__in=pair_ids)}
    for pair in Pair.objects.filter(pk__in=pair_ids):
        rows = by_pair.get(pair.id, [])
        assert pair.judgement_count == len(rows), f"pair {pair.id}: counter {pair.judgement_count}, rows {len(rows)}"
        assert len(rows) <= pair.k
        if exactly_k:
            assert len(rows) == pair.k and pair.status == Pair.Status.COMPLETE, f"pair {pair.id}: {len(rows)}"
        assert pair.status == (Pair.Status.COMPLETE if len(rows) >= pair.k else Pair.Status.OPEN)
        outcome, label, counts = expected_consensus(pair, rows)
        stored = consensus.get(pair.id)
        if stored is None:
            assert not rows, f"pair {pair.id} has judgements but no consensus row"
        else:
            assert (stored.outcome, stored.label, stored.n_judgements) == (outcome, label, len(rows)), pair.id
            assert {k: v for k, v in stored.counts.items() if v} == counts
        outcomes[outcome] += 1
    return {"judgements": len(judgements), "outcomes": dict(outcomes)}


def figures(name: str, **values) -> None:
    print(f"\nFIGURES {name}: " + ", ".join(f"{key}={value}" for key, value in values.items()))

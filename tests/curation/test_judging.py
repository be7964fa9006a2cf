"""Every path that changes a pair's judgements runs their consequences (curation/services/judging.py).

Through the real endpoints and admin pages: a judgement, an undo and a change of k each bring the
pair's consensus up to date in the same request, and a gold judgement updates the annotator's gold
accuracy (and pauses them). And no code outside ``curation.services.judging`` calls the annotation
services that change judgements or k, so no path can skip the consequences.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.models import Expertise, Lease, Pair
from curation.models import AnnotatorQuality, Consensus
from curation.services import gold
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def judge_through_the_api(user, label: str) -> dict:
    client = client_of(user)
    lease = client.post("/api/queue/next/").json()
    stored = Lease.objects.select_related("pair").get(pk=lease["lease_id"])
    left_is_expected = stored.left_image_id == stored.pair.image_correct_id
    choice = "left" if (label == "expected") == left_is_expected else "right"
    response = client.post(f"/api/leases/{lease['lease_id']}/judgement/", {"choice": choice}, format="json")
    assert response.status_code == 201, response.content
    return lease


def test_a_judgement_through_the_api_decides_the_consensus_in_the_same_request():
    pair = make_pair("RU", k=2)
    for name in ("a", "b"):
        judge_through_the_api(make_user(name, disciplines=["chemistry"]), "expected")
    consensus = Consensus.objects.get(pair=pair)
    assert (consensus.outcome, consensus.label, consensus.n_judgements) == ("confirmed", "expected", 2)


def test_an_undo_through_the_api_takes_the_decision_back():
    pair = make_pair("RU", k=1)
    user = make_user("undoer", disciplines=["chemistry"])
    judge_through_the_api(user, "expected")
    assert Consensus.objects.get(pair=pair).outcome == "confirmed"
    assert client_of(user).post("/api/judgements/undo/").status_code == 200
    consensus = Consensus.objects.get(pair=pair)
    assert (consensus.outcome, consensus.n_judgements) == ("pending", 0)


def test_a_change_of_k_through_the_api_recomputes_the_consensus():
    pair = make_pair("RU", k=3)
    judge_through_the_api(make_user("one", disciplines=["chemistry"]), "expected")
    assert Consensus.objects.get(pair=pair).outcome == "pending"
    admin = make_user("boss", role="admin")
    response = client_of(admin).patch(f"/api/pairs/{pair.pk}/", {"k": 1}, format="json")
    assert response.status_code == 200 and response.json()["k"] == 1
    assert Consensus.objects.get(pair=pair).outcome == "confirmed"


def test_a_change_of_k_in_the_django_admin_recomputes_the_consensus(client):
    pair = make_pair("RU", k=3)
    judge_through_the_api(make_user("two", disciplines=["chemistry"]), "expected")
    admin = make_user("admin-page", role="admin")
    client.force_login(admin)
    url = f"/admin/annotation/pair/{pair.pk}/change/"
    form = client.get(url)
    assert form.status_code == 200
    response = client.post(
        url,
        {
            "tuple": pair.tuple_id,
            "image_correct": pair.image_correct_id,
            "image_wrong": pair.image_wrong_id,
            "k": 1,
            "status": pair.status,
            "priority": pair.priority,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert Pair.objects.get(pk=pair.pk).k == 1
    assert Consensus.objects.get(pair=pair).outcome == "confirmed"


def test_gold_judgements_through_the_api_pause_an_inaccurate_annotator(settings):
    settings.GOLD_MIN_ITEMS, settings.GOLD_MIN_ACCURACY, settings.GOLD_RATE = 2, 0.9, 1.0
    admin = make_user("gold-admin", role="admin")
    for _ in range(2):
        gold.mark_gold(admin, make_pair("RU").pk, "expected")
    user = make_user("careless", disciplines=["chemistry"])
    for _ in range(2):
        judge_through_the_api(user, "other")
    quality = AnnotatorQuality.objects.get(user=user)
    assert (quality.gold_judged, quality.gold_correct, quality.flagged) == (2, 0, True)
    assert Expertise.objects.get(user=user).paused
    assert client_of(user).post("/api/queue/next/").status_code == 403


CHANGES = {"submit_judgement", "undo_last_judgement", "set_pair_k"}
ALLOWED = {"curation/services/judging.py", "annotation/services/queue.py", "annotation/services/catalog.py"}


def test_only_curation_judging_calls_the_services_that_change_judgements_or_k():
    offenders = []
    for folder in ("annotation", "curation", "ml", "config"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(), relative)):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in CHANGES
                    and not (isinstance(node.value, ast.Name) and node.value.id == "judging")
                ):
                    offenders.append(f"{relative}:{node.lineno} {node.attr}")
                if isinstance(node, ast.ImportFrom) and any(alias.name in CHANGES for alias in node.names):
                    offenders.append(f"{relative}:{node.lineno} imports {node.names[0].name}")
    assert offenders == []

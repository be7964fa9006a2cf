"""Reviewer adjudication (curation.services.adjudication) and the API under /api/curation/."""

import pytest
from django.core.exceptions import PermissionDenied

from annotation.models import AuditEvent, Pair
from curation.models import Adjudication, Consensus
from curation.services import judging
from curation.services.adjudication import InvalidAdjudication, adjudicate
from tests.support.judging import chemist, judge, judged_pair

pytestmark = pytest.mark.django_db


def test_it_overrides_the_consensus_and_audits_the_decision(reviewer):
    pair = judged_pair("expected", "other", "both")
    decision = adjudicate(reviewer, pair.pk, "other", "The wrong image shows the real rust.")
    consensus = Consensus.objects.get(pair=pair)
    assert (consensus.outcome, consensus.label, consensus.n_judgements) == ("adjudicated", "other", 3)
    created = AuditEvent.objects.get(action="adjudication.created")
    assert (created.actor, created.target_type, created.target_id) == (reviewer, "adjudication", str(decision.pk))
    assert created.after == {"pair": pair.pk, "label": "other", "comment": "The wrong image shows the real rust."}
    changed = AuditEvent.objects.filter(action="consensus.changed", actor=reviewer).get()
    assert (changed.before["outcome"], changed.after["outcome"], changed.after["label"]) == (
        "disputed",
        "adjudicated",
        "other",
    )


def test_it_takes_the_latest_adjudication_and_keeps_it_when_judgements_change(reviewer, admin_user):
    pair = judged_pair("other", "other")
    last = chemist()
    judge(last, pair, "other")
    adjudicate(reviewer, pair.pk, "other")
    adjudicate(admin_user, pair.pk, "neither", "Neither shows rust on stainless steel.")
    assert Consensus.objects.get(pair=pair).label == "neither"
    judging.undo(last)
    consensus = Consensus.objects.get(pair=pair)
    assert (consensus.outcome, consensus.label, consensus.n_judgements) == ("adjudicated", "neither", 2)
    assert Adjudication.objects.filter(pair=pair).count() == 2


def test_it_refuses_annotators_bad_labels_and_gold_pairs(annotator, reviewer):
    pair = judged_pair("expected", "other", "both")
    with pytest.raises(PermissionDenied):
        adjudicate(annotator, pair.pk, "expected")
    with pytest.raises(InvalidAdjudication):
        adjudicate(reviewer, pair.pk, "left")
    Pair.objects.filter(pk=pair.pk).update(is_gold=True)
    with pytest.raises(InvalidAdjudication):
        adjudicate(reviewer, pair.pk, "expected")
    assert not Adjudication.objects.exists()
    assert not AuditEvent.objects.filter(action="adjudication.created").exists()


# --- API ------------------------------------------------------------------------------------


@pytest.fixture
def outcomes():
    """Pairs of each decided outcome (the pending one last, so each helper sees one open pair)."""
    return {
        "confirmed": judged_pair("expected", "expected", "expected"),
        "reversed": judged_pair("other", "other", "expected"),
        "disputed": judged_pair("expected", "other", "neither", task="IM"),
        "pending": judged_pair("both"),
    }


def test_it_lists_consensus_with_filters(api, reviewer, outcomes):
    api.force_authenticate(reviewer)
    body = api.get("/api/curation/consensus/").json()
    assert {row["pair"]: row["outcome"] for row in body["results"]} == {
        pair.pk: outcome for outcome, pair in outcomes.items()
    }
    rows = api.get("/api/curation/consensus/?outcome=reversed").json()["results"]
    assert [row["pair"] for row in rows] == [outcomes["reversed"].pk]
    rows = api.get("/api/curation/consensus/?task=im").json()["results"]
    assert [(row["pair"], row["task"]) for row in rows] == [(outcomes["disputed"].pk, "IM")]
    assert api.get("/api/curation/consensus/?outcome=maybe").status_code == 400


def test_it_shows_one_pairs_consensus(api, reviewer, outcomes):
    api.force_authenticate(reviewer)
    row = api.get(f"/api/curation/consensus/{outcomes['reversed'].pk}/").json()
    assert (row["outcome"], row["label"], row["n_judgements"]) == ("reversed", "other", 3)
    assert row["counts"] == {"expected": 1, "other": 2, "both": 0, "neither": 0}
    assert row["agreement"] == pytest.approx(2 / 3)
    assert api.get("/api/curation/consensus/999999/").status_code == 404


def test_it_records_an_adjudication_through_the_api(api, reviewer, outcomes):
    api.force_authenticate(reviewer)
    pair = outcomes["disputed"]
    response = api.post(
        "/api/curation/adjudications/", {"pair": pair.pk, "label": "expected", "comment": "ok"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["pair"], body["reviewer"], body["label"], body["comment"]) == (pair.pk, "rev", "expected", "ok")
    assert api.get(f"/api/curation/consensus/{pair.pk}/").json()["outcome"] == "adjudicated"
    rows = api.get(f"/api/curation/adjudications/?pair={pair.pk}").json()["results"]
    assert [row["id"] for row in rows] == [body["id"]]
    assert api.get(f"/api/curation/adjudications/?pair={outcomes['reversed'].pk}").json()["count"] == 0


def test_it_answers_400_for_a_bad_label_and_404_for_an_unknown_pair(api, reviewer, outcomes):
    api.force_authenticate(reviewer)
    bad = api.post("/api/curation/adjudications/", {"pair": outcomes["disputed"].pk, "label": "left"}, format="json")
    assert bad.status_code == 400 and "label" in bad.json()
    missing = api.post("/api/curation/adjudications/", {"pair": 999999, "label": "other"}, format="json")
    assert missing.status_code == 404
    assert not Adjudication.objects.exists()


ENDPOINTS = [
    ("get", "/api/curation/consensus/"),
    ("get", "/api/curation/consensus/1/"),
    ("get", "/api/curation/adjudications/"),
    ("post", "/api/curation/adjudications/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_it_refuses_annotators_and_anonymous_users(api, annotator, method, url):
    assert getattr(api, method)(url, {"pair": 1, "label": "other"}, format="json").status_code == 401
    api.force_authenticate(annotator)
    assert getattr(api, method)(url, {"pair": 1, "label": "other"}, format="json").status_code == 403


def test_it_documents_the_curation_api(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert {"/api/curation/consensus/", "/api/curation/consensus/{pair_id}/", "/api/curation/adjudications/"} <= set(
        paths
    )
    assert "post" in paths["/api/curation/adjudications/"]

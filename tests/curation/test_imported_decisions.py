"""Decisions made elsewhere (curation.services.consensus.record_imported_decision), and a tuple's
paraphrases and rubrics: recorded with provenance, off the queue, frozen into versions without re-judging,
overridden by judgements at k or an adjudication; shown to reviewers; never to annotators."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import AuditEvent, Pair
from annotation.services import queue
from curation.models import Consensus
from curation.services import adjudication, consensus, versions
from tests.support.factories import TupleFactory, make_pair
from tests.support.judging import chemist, judge

pytestmark = pytest.mark.django_db

SOURCE = {"source": "Science-T2I-S/data/test-00000-of-00001.parquet", "row": 7, "dataset": "published"}


def test_an_imported_decision_is_recorded_with_provenance_and_takes_the_pair_off_the_queue(admin_user):
    pair = make_pair("RU")
    row, what = consensus.record_imported_decision(pair, "expected", SOURCE)
    assert what == "recorded"
    row.refresh_from_db()
    assert (row.outcome, row.label, row.provenance) == ("imported", "expected", SOURCE)
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    assert queue.next_lease(chemist()) is None, "a decided import is not served again"
    event = AuditEvent.objects.filter(action="consensus.changed", target_id=str(pair.pk)).get()
    assert event.after["provenance"] == SOURCE
    assert consensus.record_imported_decision(pair, "expected", SOURCE)[1] == "unchanged"


def test_an_imported_decision_survives_a_recompute_and_can_be_frozen(admin_user):
    pair = make_pair("RU")
    consensus.record_imported_decision(pair, "other", SOURCE)
    consensus.recompute_all()
    assert Consensus.objects.get(pair=pair).outcome == "imported"
    version = versions.build_version(admin_user, "from-import")
    (member,) = version.members.all()
    assert (member.pair_id, member.label, member.outcome) == (pair.pk, "other", "imported")


def test_judgements_at_k_and_adjudications_take_over_an_imported_decision(reviewer):
    judged = make_pair("RU", k=2)
    consensus.record_imported_decision(judged, "expected", SOURCE, close=False)
    judge(chemist(), judged, "other")
    assert Consensus.objects.get(pair=judged).outcome == "imported", "one judgement of two: still imported"
    judge(chemist(), judged, "other")
    assert (Consensus.objects.get(pair=judged).outcome, Consensus.objects.get(pair=judged).label) == (
        "reversed",
        "other",
    )
    assert consensus.record_imported_decision(judged, "expected", SOURCE)[1] == "kept"

    adjudicated = make_pair("RU")
    consensus.record_imported_decision(adjudicated, "expected", SOURCE)
    adjudication.adjudicate(reviewer, adjudicated.pk, "neither")
    assert Consensus.objects.get(pair=adjudicated).outcome == "adjudicated"


def test_reviewers_see_rubrics_paraphrases_scene_and_where_a_decision_came_from(client, reviewer):
    tuple_ = TupleFactory(
        implicit_paraphrases=["An iron nail after a rainy month outdoors."],
        scene_scoring="A nail must be visible.",
        real_scoring="3: orange-brown rust.",
        scene="complex",
    )
    pair = make_pair("RU", tuple=tuple_)
    consensus.record_imported_decision(pair, "expected", SOURCE)
    client.force_login(reviewer)
    page = client.get(reverse("curation:adjudication-detail", args=[pair.pk])).content.decode()
    for text in (
        "An iron nail after a rainy month outdoors.",
        "A nail must be visible.",
        "3: orange-brown rust.",
        "complex",
        "Science-T2I-S/data/test-00000-of-00001.parquet",
        "row 7",
    ):
        assert text in page, text


def test_admins_set_paraphrases_and_rubrics_and_annotators_never_see_them(admin_user, api, annotator):
    from rest_framework.test import APIClient

    as_admin = APIClient()
    as_admin.force_authenticate(admin_user)
    tuple_ = TupleFactory()
    response = as_admin.patch(
        f"/api/tuples/{tuple_.id}/",
        {
            "implicit_paraphrases": ["  Another wording.  ", "", tuple_.implicit_prompt],
            "scene_scoring": "Scene gate.",
            "real_scoring": "Reality grade.",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["implicit_paraphrases"] == ["Another wording."], "stripped, no blanks, not the prompt itself"
    assert (body["scene_scoring"], body["real_scoring"]) == ("Scene gate.", "Reality grade.")
    too_long = as_admin.patch(f"/api/tuples/{tuple_.id}/", {"real_scoring": "x" * 20001}, format="json")
    assert too_long.status_code == 400 and "real_scoring" in too_long.json()
    make_pair("RU", tuple=tuple_)
    api.force_authenticate(annotator)
    lease = api.post("/api/queue/next/").json()
    assert "Scene gate." not in str(lease) and "Another wording." not in str(lease)


def test_imported_pairs_keep_the_split_they_came_from_unless_drawn(admin_user):
    from curation.services import splits

    test_pair, train_pair = make_pair("RU"), make_pair("RU")
    consensus.record_imported_decision(test_pair, "expected", {**SOURCE, "split": "test_S"})
    consensus.record_imported_decision(train_pair, "expected", {**SOURCE, "split": "train"})
    ratios = {"train": 0.0, "validation": 1.0, "test": 0.0}  # a draw would put every group in validation
    kept = versions.build_version(admin_user, "kept", ratios=ratios, parent=None)
    assert {m.pair_id: m.split for m in kept.members.all()} == {test_pair.pk: "test_S", train_pair.pk: "train"}
    assert (kept.split_ratios["keep_imported_splits"], kept.split_ratios["imported_split_groups"]) == (True, 2)
    drawn = versions.build_version(admin_user, "drawn", ratios=ratios, parent=None, keep_imported_splits=False)
    assert {m.split for m in drawn.members.all()} == {"validation"}
    # One group imported from a test set and from train: the test set wins, nothing of it trains.
    rows = [("test_S", "imported"), ("train", "imported"), ("test_C", "confirmed")]
    pinned = versions.imported_splits(["g", "g", "h"], [({"split": s}, o) for s, o in rows], 0, 1)
    assert pinned == {"g": "test_S"}
    assert splits.SPLITS  # the four split names the provenance may carry


def test_the_command_can_draw_imported_splits(admin_user):
    from io import StringIO

    from django.core.management import call_command

    pair = make_pair("RU")
    consensus.record_imported_decision(pair, "expected", {**SOURCE, "split": "test_S"})
    out = StringIO()
    call_command(
        "freeze_version",
        "cmd",
        "--user",
        admin_user.username,
        "--ratios",
        "0,1,0",
        "--parent",
        "none",
        "--draw-imported-splits",
        "--json",
        stdout=out,
    )
    assert versions.latest_version().members.get().split == "validation"

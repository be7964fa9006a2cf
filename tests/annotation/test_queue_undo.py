"""POST /api/judgements/undo/: take back the latest judgement and see the pair again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Judgement, Lease, Pair
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db


def _judge_next(api, choice="left"):
    lease = api.post("/api/queue/next/").json()
    api.post(f"/api/leases/{lease['lease_id']}/judgement/", {"choice": choice}, format="json")
    return lease


def test_it_removes_the_latest_judgement_and_leases_the_pair_again_in_the_same_order(api, annotator):
    make_pair("RU", k=1)
    make_pair("RU", k=1)
    api.force_authenticate(annotator)
    first = _judge_next(api)
    pair = Pair.objects.get(pk=first["pair_id"])
    assert pair.status == Pair.Status.COMPLETE
    api.post("/api/queue/next/")  # the page has already auto-advanced
    response = api.post("/api/judgements/undo/")
    assert response.status_code == 200
    again = response.json()
    assert again["pair_id"] == first["pair_id"]
    old, new = Lease.objects.get(pk=first["lease_id"]), Lease.objects.get(pk=again["lease_id"])
    assert (new.left_image_id, new.right_image_id) == (old.left_image_id, old.right_image_id)
    assert not Judgement.objects.filter(annotator=annotator).exists()
    pair.refresh_from_db()
    assert (pair.judgement_count, pair.status) == (0, Pair.Status.OPEN)
    assert Lease.objects.filter(annotator=annotator, state="active").count() == 1


def test_it_lets_the_annotator_judge_the_undone_pair_again(api, annotator):
    make_pair("RU")
    api.force_authenticate(annotator)
    _judge_next(api, "left")
    lease = api.post("/api/judgements/undo/").json()
    assert api.post(f"/api/leases/{lease['lease_id']}/judgement/", {"choice": "right"}).status_code == 201
    assert Judgement.objects.get(annotator=annotator).choice == "right"


def test_it_has_nothing_to_undo_after_the_window(api, annotator, settings):
    make_pair("RU")
    api.force_authenticate(annotator)
    _judge_next(api)
    Judgement.objects.update(created_at=timezone.now() - settings.UNDO_WINDOW - timedelta(seconds=1))
    assert api.post("/api/judgements/undo/").status_code == 404


def test_it_only_undoes_the_annotators_own_judgement(api, annotator):
    from tests.support.factories import make_user

    make_pair("RU")
    api.force_authenticate(annotator)
    _judge_next(api)
    api.force_authenticate(make_user("chem2", disciplines=["chemistry"]))
    assert api.post("/api/judgements/undo/").status_code == 404
    assert Judgement.objects.count() == 1

"""POST /api/queue/next/: what a lease carries and who gets which pair."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Lease, Pair
from annotation.services import queue
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def _next(api, user, **params):
    api.force_authenticate(user)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return api.post(f"/api/queue/next/?{query}" if query else "/api/queue/next/")


def test_it_leases_a_pair_with_only_what_an_annotator_may_see(api, annotator):
    pair = make_pair("RU")
    response = _next(api, annotator)
    assert response.status_code == 200
    body = response.json()
    assert body["pair_id"] == pair.id
    assert body["implicit_prompt"] == pair.tuple.implicit_prompt
    assert body["task"]["code"] == "RU" and body["discipline"]["slug"] == "chemistry"
    assert body["left_image_url"].endswith(f"/api/leases/{body['lease_id']}/image/left/")
    text = response.content.decode()
    for secret in (pair.tuple.explicit_prompt, pair.tuple.superficial_prompt, "image_correct", "expected"):
        assert secret not in text


def test_it_returns_the_same_lease_while_it_is_live(api, annotator):
    make_pair("RU")
    make_pair("RU")
    first = _next(api, annotator).json()
    assert _next(api, annotator).json()["lease_id"] == first["lease_id"]
    assert Lease.objects.filter(annotator=annotator).count() == 1


def test_it_answers_204_when_nothing_is_left(api, annotator):
    assert _next(api, annotator).status_code == 204


def test_it_serves_only_pairs_inside_the_expertise(api, annotator, outsider):
    make_pair("RI")  # biology
    assert _next(api, annotator).status_code == 204
    assert _next(api, outsider).status_code == 200


def test_it_serves_task_level_expertise(api):
    expert = make_user("bu-expert", tasks=["BU"])
    make_pair("GR")
    bu = make_pair("BU")
    assert _next(api, expert).json()["pair_id"] == bu.id


def test_it_applies_task_and_discipline_filters(api):
    expert = make_user("all", disciplines=["physics", "chemistry"])
    make_pair("RU")
    gr = make_pair("GR")
    assert _next(api, expert, task="GR").json()["pair_id"] == gr.id
    queue.release(expert, Lease.objects.get(annotator=expert).id)
    assert _next(api, expert, discipline="biology").status_code == 204


def test_it_never_serves_a_pair_to_more_than_k_annotators(api):
    pair = make_pair("RU", k=2)
    users = [make_user(f"chem{i}", disciplines=["chemistry"]) for i in range(3)]
    assert _next(api, users[0]).json()["pair_id"] == pair.id
    assert _next(api, users[1]).json()["pair_id"] == pair.id
    assert _next(api, users[2]).status_code == 204


def test_it_never_serves_a_judged_pair_again_to_the_same_annotator(api, annotator):
    make_pair("RU")
    lease = _next(api, annotator).json()
    api.post(f"/api/leases/{lease['lease_id']}/judgement/", {"choice": "left"}, format="json")
    assert _next(api, annotator).status_code == 204


def test_it_gives_an_expired_lease_slot_to_someone_else(api, annotator):
    pair = make_pair("RU", k=1)
    other = make_user("chem2", disciplines=["chemistry"])
    lease_id = _next(api, annotator).json()["lease_id"]
    assert _next(api, other).status_code == 204
    Lease.objects.filter(pk=lease_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _next(api, other).json()["pair_id"] == pair.id


def test_it_retires_the_annotators_own_expired_lease_on_read(api, annotator):
    make_pair("RU")
    first = _next(api, annotator).json()["lease_id"]
    Lease.objects.filter(pk=first).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = _next(api, annotator).json()["lease_id"]
    assert second != first
    assert Lease.objects.get(pk=first).state == Lease.State.EXPIRED


def test_it_serves_a_skipped_pair_only_after_the_rest_of_the_queue(api, annotator):
    pair_ids = {make_pair("RU").id, make_pair("RU").id}
    lease = _next(api, annotator).json()
    skipped = lease["pair_id"]
    assert api.post(f"/api/leases/{lease['lease_id']}/release/").status_code == 200
    other = _next(api, annotator).json()
    assert other["pair_id"] == (pair_ids - {skipped}).pop()
    api.post(f"/api/leases/{other['lease_id']}/judgement/", {"choice": "right"})
    assert _next(api, annotator).json()["pair_id"] == skipped


def test_it_skips_retired_and_untasked_pairs(api, annotator):
    retired = make_pair("RU")
    Pair.objects.filter(pk=retired.pk).update(status=Pair.Status.RETIRED)
    untasked = make_pair("RU")
    untasked.tuple.task = None
    untasked.tuple.save()
    assert _next(api, annotator).status_code == 204


def test_it_refuses_non_annotators(api, reviewer):
    make_pair("RU")
    assert _next(api, reviewer).status_code == 403
    api.force_authenticate(None)
    assert api.post("/api/queue/next/").status_code in (401, 403)


def test_it_randomises_the_display_order_per_lease(api):
    pairs = [make_pair("RU", k=1) for _ in range(24)]
    user = make_user("chem-order", disciplines=["chemistry"])
    lefts = []
    for _ in pairs:
        body = _next(api, user).json()
        lease = Lease.objects.get(pk=body["lease_id"])
        lefts.append(lease.left_image_id == lease.pair.image_correct_id)
        api.post(f"/api/leases/{lease.id}/judgement/", {"choice": "both"})
    assert 0 < sum(lefts) < len(lefts)

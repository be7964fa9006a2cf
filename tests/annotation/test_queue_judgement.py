"""POST /api/leases/<id>/judgement/, heartbeat and release: what is recorded and what is refused."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Judgement, Lease, Pair
from annotation.services import queue
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def _lease(api, user):
    api.force_authenticate(user)
    return Lease.objects.get(pk=api.post("/api/queue/next/").json()["lease_id"])


def _judge(api, lease, choice="left", **extra):
    return api.post(f"/api/leases/{lease.id}/judgement/", {"choice": choice, **extra}, format="json")


@pytest.mark.parametrize("choice", ["left", "right"])
def test_it_maps_the_choice_to_the_image_shown_on_that_side(api, annotator, choice):
    make_pair("RU")
    lease = _lease(api, annotator)
    assert _judge(api, lease, choice).status_code == 201
    judgement = Judgement.objects.get(lease=lease)
    assert judgement.chosen_image_id == (lease.left_image_id if choice == "left" else lease.right_image_id)


@pytest.mark.parametrize("choice", ["both", "neither"])
def test_it_records_both_and_neither_without_a_chosen_image(api, annotator, choice):
    make_pair("RU")
    lease = _lease(api, annotator)
    assert _judge(api, lease, choice).status_code == 201
    assert Judgement.objects.get(lease=lease).chosen_image_id is None


def test_it_stores_flags_comment_and_time_and_ends_the_lease(api, annotator):
    make_pair("RU")
    lease = _lease(api, annotator)
    _judge(api, lease, "right", flag_prompt_unclear=True, flag_off_topic=True, comment="odd nail", time_spent_ms=4200)
    judgement = Judgement.objects.get(lease=lease)
    assert (judgement.flag_prompt_unclear, judgement.flag_image_broken, judgement.flag_off_topic) == (True, False, True)
    assert (judgement.comment, judgement.time_spent_ms) == ("odd nail", 4200)
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.JUDGED


def test_it_does_not_tell_the_annotator_whether_they_matched_the_expected_image(api, annotator):
    pair = make_pair("RU")
    lease = _lease(api, annotator)
    body = _judge(api, lease, "left").json()
    assert set(body) == {"judgement_id", "pair_id", "choice", "created_at"}
    assert str(pair.image_correct_id) not in str(body.get("chosen_image", ""))


def test_it_keeps_the_counter_equal_to_the_rows_and_completes_at_k(api):
    pair = make_pair("RU", k=2)
    for i in range(2):
        user = make_user(f"chem{i}", disciplines=["chemistry"])
        _judge(api, _lease(api, user), "left")
    pair.refresh_from_db()
    assert pair.judgement_count == Judgement.objects.filter(pair=pair).count() == 2
    assert pair.status == Pair.Status.COMPLETE


def test_it_treats_a_repeated_submission_as_the_same_judgement(api, annotator):
    make_pair("RU")
    lease = _lease(api, annotator)
    assert _judge(api, lease, "left").status_code == 201
    assert _judge(api, lease, "left").status_code == 200
    assert _judge(api, lease, "right").status_code == 409
    assert Judgement.objects.count() == 1
    assert Pair.objects.get().judgement_count == 1


def test_it_refuses_a_lease_of_someone_else(api, annotator):
    make_pair("RU")
    lease = _lease(api, annotator)
    other = make_user("chem2", disciplines=["chemistry"])
    api.force_authenticate(other)
    assert _judge(api, lease).status_code == 404
    assert not Judgement.objects.exists()


def test_it_refuses_a_released_lease(api, annotator):
    make_pair("RU")
    lease = _lease(api, annotator)
    api.post(f"/api/leases/{lease.id}/release/")
    response = _judge(api, lease)
    assert response.status_code == 409 and response.json()["code"] == "lease_not_active"


def test_it_refuses_a_bad_choice_with_400(api, annotator):
    make_pair("RU")
    assert _judge(api, _lease(api, annotator), "middle").status_code == 400


def test_it_accepts_a_late_judgement_while_the_slot_is_still_free(api, annotator):
    make_pair("RU", k=1)
    lease = _lease(api, annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    assert _judge(api, lease).status_code == 201


def test_it_refuses_a_late_judgement_once_the_slot_went_to_someone_else(api, annotator):
    pair = make_pair("RU", k=1)
    lease = _lease(api, annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    other = make_user("chem2", disciplines=["chemistry"])
    other_lease = _lease(api, other)
    assert other_lease.pair_id == pair.id
    api.force_authenticate(annotator)
    assert _judge(api, lease).status_code == 409
    pair.refresh_from_db()
    assert pair.judgement_count == 0


def test_it_extends_a_lease_on_heartbeat(api, annotator, settings):
    make_pair("RU")
    lease = _lease(api, annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + timedelta(seconds=30))
    assert api.post(f"/api/leases/{lease.id}/heartbeat/").status_code == 200
    assert Lease.objects.get(pk=lease.pk).expires_at > timezone.now() + settings.LEASE_TTL - timedelta(seconds=10)


def test_it_refuses_a_heartbeat_for_a_lease_whose_slot_was_taken(api, annotator):
    make_pair("RU", k=1)
    lease = _lease(api, annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
    _lease(api, make_user("chem2", disciplines=["chemistry"]))
    api.force_authenticate(annotator)
    assert api.post(f"/api/leases/{lease.id}/heartbeat/").status_code == 409


def test_it_reclaims_expired_leases_in_the_periodic_task(annotator):
    make_pair("RU")
    lease = queue.next_lease(annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert queue.reclaim_expired_leases() == 1
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.EXPIRED


def test_it_serves_lease_images_only_to_the_lease_holder(api, annotator):
    make_pair("RU")
    lease = _lease(api, annotator)
    response = api.get(f"/api/leases/{lease.id}/image/left/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == lease.left_image.file.read()
    api.force_authenticate(make_user("chem2", disciplines=["chemistry"]))
    assert api.get(f"/api/leases/{lease.id}/image/left/").status_code == 404

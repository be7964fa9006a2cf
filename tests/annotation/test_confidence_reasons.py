"""Confidence (sure / unsure) and reasons from the task guide's list, sent with a judgement and stored."""

import pytest

from annotation.models import Judgement, Task
from annotation.services import guides, queue
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db


@pytest.fixture
def lease(annotator, admin_user):
    guides.save_guide(admin_user, Task.objects.get(code="RU"), body="", reasons=["colour", "flakes"])
    make_pair("RU")
    return queue.next_lease(annotator)


def post(api, annotator, lease, **body):
    api.force_authenticate(annotator)
    return api.post(f"/api/leases/{lease.id}/judgement/", {"choice": "left", **body}, format="json")


def test_it_stores_the_confidence_and_the_reasons_given(api, annotator, lease):
    response = post(api, annotator, lease, confidence="unsure", reasons=["flakes", "colour", "flakes"])
    assert response.status_code == 201, response.data
    judgement = Judgement.objects.get(pk=response.data["judgement_id"])
    assert judgement.confidence == "unsure" and judgement.reasons == ["flakes", "colour"]


def test_both_are_optional(api, annotator, lease):
    assert post(api, annotator, lease).status_code == 201
    judgement = Judgement.objects.get(lease_id=lease.id)
    assert judgement.confidence == "" and judgement.reasons == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"confidence": "certain"}, "confidence"),
        ({"reasons": "colour"}, "reasons"),
        ({"reasons": ["x" * 61]}, "reasons"),
        ({"reasons": [f"r{i}" for i in range(9)]}, "reasons"),
    ],
)
def test_it_refuses_a_malformed_confidence_or_reasons(api, annotator, lease, body, field):
    response = post(api, annotator, lease, **body)
    assert response.status_code == 400 and field in response.data
    assert not Judgement.objects.exists()


def test_it_refuses_a_reason_that_is_not_in_the_tasks_list(api, annotator, lease):
    response = post(api, annotator, lease, reasons=["colour", "vibes"])
    assert response.status_code == 400 and response.data["code"] == "invalid_reasons"
    assert "vibes" in response.data["detail"]
    assert not Judgement.objects.exists()

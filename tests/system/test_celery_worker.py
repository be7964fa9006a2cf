"""The lease reclaimer runs on a real Celery worker over the configured broker."""

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from annotation.models import Lease
from annotation.services import queue
from annotation.tasks import reclaim_expired_leases
from config.celery import app
from tests.support.factories import make_pair

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(settings.CELERY_BROKER_URL == "filesystem://", reason="needs a broker server (Redis/RabbitMQ)"),
]


def test_it_reclaims_expired_leases_on_a_real_worker(annotator):
    make_pair("RU")
    lease = queue.next_lease(annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        assert reclaim_expired_leases.delay().get(timeout=60) == 1
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.EXPIRED

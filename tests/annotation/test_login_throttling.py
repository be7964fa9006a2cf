"""Login throttling (django-axes, config/settings.py): LOGIN_FAILURE_LIMIT wrong passwords for one
username from one address lock that pair out, on the login page, the Django admin's login and the
API token endpoint; the right password is then refused until the cooldown passes or an admin resets
the lock; a success before the limit starts the count again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from tests.support.factories import make_user

PASSWORD = "pw-for-tests-1"
pytestmark = pytest.mark.django_db


@pytest.fixture
def limit(settings) -> int:
    """The configured limit (the default, 5, unless LOGIN_FAILURE_LIMIT is set)."""
    assert settings.AXES_FAILURE_LIMIT >= 2
    return settings.AXES_FAILURE_LIMIT


@pytest.fixture
def user(db):
    return make_user("ann-chem", "annotator", disciplines=["chemistry"])


def login_page(client, password, username="ann-chem"):
    return client.post("/accounts/login/", {"username": username, "password": password})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, times: int, send=login_page):
    for _ in range(times):
        response = send(client, "wrong-password")
        assert response.status_code in (200, 400), response.status_code  # a failure, not (yet) a lockout


def lock_out(client, limit: int, username="ann-chem"):
    """``limit`` wrong passwords on the login page: the last one is answered with the lockout page."""
    fail(client, limit - 1, send=lambda c, pw: login_page(c, pw, username))
    assert login_page(client, "wrong-password", username).status_code == 429


def test_the_limit_locks_out_the_right_password_on_the_login_page(user, limit):
    client = Client()
    fail(client, limit - 1)
    locked = login_page(client, "wrong-password")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    response = login_page(client, PASSWORD)
    assert response.status_code == 429 and not signed_in(client)


def test_the_lock_lasts_until_the_cooldown_passes(user, limit, settings):
    client = Client()
    lock_out(client, limit)
    assert login_page(client, PASSWORD).status_code == 429
    # The cooldown counts from the last failure; age the attempt by just under, then just over it.
    cooloff = settings.AXES_COOLOFF_TIME
    attempt = AccessAttempt.objects.get(username="ann-chem")
    AccessAttempt.objects.filter(pk=attempt.pk).update(
        attempt_time=attempt.attempt_time - cooloff + timedelta(seconds=30)
    )
    assert login_page(client, PASSWORD).status_code == 429 and not signed_in(client)
    AccessAttempt.objects.filter(pk=attempt.pk).update(
        attempt_time=attempt.attempt_time - cooloff - timedelta(seconds=30)
    )
    assert login_page(client, PASSWORD).status_code == 302 and signed_in(client)


def test_an_admin_reset_lifts_the_lock(user, limit):
    client = Client()
    lock_out(client, limit)
    assert login_page(client, PASSWORD).status_code == 429
    call_command("axes_reset_username", "ann-chem")
    assert login_page(client, PASSWORD).status_code == 302 and signed_in(client)


def test_a_success_before_the_limit_starts_the_count_again(user, limit):
    client = Client()
    fail(client, limit - 1)
    assert login_page(client, PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    fail(client, limit - 1)  # 2 × (limit − 1) failures in all, but never limit in a row
    assert login_page(client, PASSWORD).status_code == 302 and signed_in(client)


def test_the_lock_is_per_username_and_address(user, limit, db):
    make_user("rev", "reviewer")
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    lock_out(attacker, limit)
    assert login_page(attacker, PASSWORD).status_code == 429
    assert login_page(Client(REMOTE_ADDR="198.51.100.7"), PASSWORD).status_code == 302, "another address"
    assert login_page(attacker, PASSWORD, username="rev").status_code == 302, "another username"


def token(client, password):
    return client.post("/api/auth/token/", {"username": "ann-chem", "password": password}, format="json")


def test_the_token_endpoint_counts_failures_and_refuses_a_locked_out_user(user, limit):
    client = APIClient()
    fail(client, limit - 1, send=token)
    assert token(client, "wrong-password").status_code == 429  # the failure that reaches the limit, as on the page
    response = token(client, PASSWORD)
    assert response.status_code == 429 and "token" not in response.json()
    assert response.json()["code"] == "locked_out"
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert AccessAttempt.objects.get(username="ann-chem").failures_since_start >= limit
    call_command("axes_reset_username", "ann-chem")
    assert "token" in token(client, PASSWORD).json()


def test_failures_on_the_login_page_and_the_api_add_up(user, limit):
    client = APIClient()
    fail(client, limit - 1)
    assert token(client, "wrong-password").status_code == 429
    assert login_page(client, PASSWORD).status_code == 429


def test_the_django_admin_login_is_throttled_too(limit, db):
    make_user("boss", "admin")
    client = Client()
    for _ in range(limit):
        client.post("/admin/login/", {"username": "boss", "password": "wrong-password"})
    response = client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 429 and not signed_in(client)


def test_a_token_sign_in_before_the_limit_starts_the_count_again_as_the_page_does(user, limit):
    client = APIClient()
    fail(client, limit - 1, send=token)
    assert "token" in token(client, PASSWORD).json()
    fail(client, limit - 1, send=token)  # 2 × (limit − 1) failures in all, but never limit in a row
    assert "token" in token(client, PASSWORD).json()
    user.refresh_from_db()
    assert user.last_login is not None  # recorded, as a page sign-in is

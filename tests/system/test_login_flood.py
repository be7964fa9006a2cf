"""A login flood must not slow every annotator (issue 15): sign-in attempts are limited per client address and
overall, in process memory, before any password is hashed (config/login_rate.py). Over a limit the login
page, the token endpoint and the admin login answer 429 with Retry-After, without a hash, a query or an axes
row; other addresses and annotators' other requests are untouched; the limits recover as time passes (a fake
clock: nothing here sleeps). Through Django's test client and the real URLs; each client builds its own
middleware, so its counts start from zero, as a fresh worker process's do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.hashers import get_hashers
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from config import login_rate
from tests.support.factories import make_user
from tests.support.paths import REPO

PASSWORD = "pw-for-tests-1"
ATTACKER, OTHER = "203.0.113.9", "198.51.100.7"
pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(login_rate, "clock", fake)
    return fake


@pytest.fixture
def limits(settings, clock):
    """A per-address limit of 3 a minute, and an overall one too high to matter (unless a test lowers it)."""
    settings.LOGIN_RATE_LIMITING = True
    settings.LOGIN_RATE_PER_ADDRESS = 3
    settings.LOGIN_RATE_OVERALL = 10_000
    return settings


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every password hash computed (encode) or compared (verify), by any configured hasher."""
    calls: list[str] = []
    for hasher in get_hashers():
        cls = type(hasher)
        for name in ("encode", "verify"):
            original = getattr(cls, name)

            def counted(self, *args, _original=original, _name=name, **kwargs):
                calls.append(_name)
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, name, counted)
    return calls


def token(client, password="wrong-password", username="ann-chem", **extra):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json", **extra)


def login_page(client, password="wrong-password", username="ann-chem", **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def assert_rate_limited(response, *, wait: int | None = None):
    assert response.status_code == 429, response.status_code
    assert int(response["Retry-After"]) >= 1
    if wait is not None:
        assert int(response["Retry-After"]) == wait
    assert response["Cache-Control"] == "no-store"


def test_the_token_endpoint_answers_429_in_json_over_the_per_address_limit(limits, annotator):
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        assert token(client).status_code == 400  # a wrong password, answered by the view
    refused = token(client, PASSWORD)  # the right one too: every attempt counts
    assert_rate_limited(refused, wait=20)  # 3 a minute: the next one in 20 s
    body = refused.json()
    assert body["code"] == "rate_limited" and "Too many sign-in attempts" in body["detail"]
    assert "token" not in body


def test_the_login_page_and_the_admin_login_answer_a_short_page(limits, annotator):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        assert login_page(client).status_code == 200  # the form again, with its error
    for refused in (login_page(client, PASSWORD), client.post("/admin/login/", {"username": "x", "password": "y"})):
        assert_rate_limited(refused)
        assert refused["Content-Type"].startswith("text/html")
        assert b"Too many sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session
    assert login_page(client).status_code == 429, "one budget for the three endpoints of one address"


def test_another_address_still_signs_in(limits, annotator):
    client = Client()
    for i in range(3):  # usernames that do not exist: no axes lockout, only the rate limit
        assert login_page(client, username=f"nobody-{i}", REMOTE_ADDR=ATTACKER).status_code == 200
    assert login_page(client, PASSWORD, REMOTE_ADDR=ATTACKER).status_code == 429
    assert login_page(client, PASSWORD, REMOTE_ADDR=OTHER).status_code == 302
    assert "token" in token(APIClient(), PASSWORD, REMOTE_ADDR=OTHER).json()


def test_the_overall_limit_caps_every_address(limits, annotator):
    limits.LOGIN_RATE_PER_ADDRESS = 10_000
    limits.LOGIN_RATE_OVERALL = 8  # at most a quarter of a minute's attempts at once: 2
    burst = max(1, math.floor(8 * login_rate.OVERALL_BURST_SHARE))
    client = APIClient()
    for i in range(burst):
        assert token(client, REMOTE_ADDR=f"192.0.2.{i}").status_code == 400
    refused = token(client, PASSWORD, REMOTE_ADDR="192.0.2.200")  # an address never seen before
    assert_rate_limited(refused, wait=8)  # 8 a minute: the next one in 7.5 s, rounded up
    assert "on this server" in refused.json()["detail"]


def test_a_refused_attempt_hashes_nothing_queries_nothing_and_writes_no_axes_row(limits, annotator, hashes):
    client = APIClient(REMOTE_ADDR=ATTACKER)
    token(client, username="nobody-1")
    assert hashes, "an admitted attempt with an unknown username hashes a password all the same"
    for i in range(2, 4):
        token(client, username=f"nobody-{i}")
    assert AccessAttempt.objects.count() == 3
    hashed = len(hashes)
    with CaptureQueriesContext(connection) as queries:
        for i in range(4, 54):
            assert_rate_limited(token(client, username=f"nobody-{i}"))
            assert_rate_limited(login_page(client, username=f"nobody-{i}"))
    assert len(hashes) == hashed
    assert queries.captured_queries == []
    assert AccessAttempt.objects.count() == 3


def test_annotators_other_requests_are_never_limited(limits, annotator):
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=annotator).key
    client = APIClient(REMOTE_ADDR=ATTACKER)
    limits.LOGIN_RATE_OVERALL = 3
    for _ in range(5):
        token(client)
    assert token(client).status_code == 429  # both limits reached
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    for _ in range(20):
        assert client.get("/api/me/").status_code == 200
    page = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(20):
        assert page.get("/accounts/login/").status_code == 200, "showing the form is not an attempt"


def test_the_limits_recover_as_time_passes(limits, annotator, clock):
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        token(client)
    assert_rate_limited(token(client), wait=20)
    clock.now += 19
    assert_rate_limited(token(client), wait=1)
    clock.now += 1
    assert token(client).status_code == 400, "one attempt a 20 s"
    assert_rate_limited(token(client), wait=20)
    clock.now += 60
    assert "token" in token(client, PASSWORD).json(), "a quiet minute refills the whole budget"
    for _ in range(2):
        assert token(client).status_code == 400
    assert token(client).status_code == 429


def test_a_sign_in_that_arrives_while_another_is_checked_is_refused_at_once(limits):
    """One sign-in at a time per process: the second takes no thread and no core; the slot is given back
    when the first has been answered, or has failed."""
    factory = RequestFactory()
    inner: list[HttpResponse] = []

    def view(request):
        if not inner:  # while this sign-in is being checked, another one (from another address) arrives
            inner.append(middleware(factory.post("/api/auth/token/", REMOTE_ADDR=OTHER)))
        if request.headers.get("X-Fail"):
            raise RuntimeError("the view failed")
        return HttpResponse("checked")

    middleware = login_rate.LoginRateMiddleware(view)
    assert middleware(factory.post("/api/auth/token/", REMOTE_ADDR=ATTACKER)).content == b"checked"
    assert_rate_limited(inner[0], wait=1)
    assert "at this moment" in json.loads(inner[0].content)["detail"]
    with pytest.raises(RuntimeError):
        middleware(factory.post("/accounts/login/", REMOTE_ADDR=OTHER, HTTP_X_FAIL="1"))
    assert middleware(factory.post("/admin/login/", REMOTE_ADDR=OTHER)).content == b"checked"


def test_memory_stays_bounded_under_many_addresses(clock):
    limiter = login_rate.LoginRateLimiter(per_address=2, overall=10**9, max_addresses=100)
    for i in range(1000):
        assert limiter.attempt(f"10.0.{i // 256}.{i % 256}") is None
        limiter.done()
        assert len(limiter.addresses) <= 100
    assert "10.0.3.231" in limiter.addresses and "10.0.0.0" not in limiter.addresses, "the oldest went first"
    clock.now += login_rate.WINDOW_SECONDS
    limiter.attempt("10.9.9.9")
    assert list(limiter.addresses) == ["10.9.9.9"], "addresses idle for a minute are forgotten"


def test_the_explicit_switch_turns_it_off(limits, annotator):
    limits.LOGIN_RATE_LIMITING = False
    client = APIClient(REMOTE_ADDR=ATTACKER)
    assert all(token(client, username=f"nobody-{i}").status_code == 400 for i in range(10))


@pytest.mark.parametrize("name", ["LOGIN_RATE_PER_ADDRESS", "LOGIN_RATE_OVERALL"])
def test_a_rate_of_zero_does_not_silently_disable_it(tmp_path, name):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={**env, "DJANGO_DEBUG": "true", "SCIT2I_VAR_DIR": str(tmp_path), name: "0"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{name}=0 must be at least 1" in result.stderr


def test_it_counts_before_anything_hashes_or_writes():
    from django.conf import settings

    middleware = settings.MIDDLEWARE
    limiter = middleware.index("config.login_rate.LoginRateMiddleware")
    assert limiter < middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    assert limiter < middleware.index("django.contrib.sessions.middleware.SessionMiddleware")
    assert limiter < middleware.index("axes.middleware.AxesMiddleware")


def test_the_admin_login_refuses_even_the_right_password_over_the_limit(limits, db):
    make_user("boss", "admin")
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(3):
        client.post("/admin/login/", {"username": "boss", "password": "wrong-password"})
    assert_rate_limited(client.post("/admin/login/", {"username": "boss", "password": PASSWORD}))
    elsewhere = client.post("/admin/login/", {"username": "boss", "password": PASSWORD}, REMOTE_ADDR=OTHER)
    assert elsewhere.status_code == 302

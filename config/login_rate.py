"""Sign-in attempts limited per client address and overall, in process memory, before any password is hashed.

Every sign-in (the login page, ``POST /api/auth/token/``, the Django admin's login) runs Django's password
hasher (PBKDF2: about 0.2 s of CPU), even for a username that does not exist, and django-axes writes a row per
failure. 24 threads posting random usernames (never locked out: each name fails once) saturated two cores and
took annotators' ``GET /api/me/`` from 9 ms to 2.9 s (issue 15). :class:`LoginRateMiddleware` counts the
attempts on those endpoints (:data:`SIGN_IN_VIEWS`, every method but GET/HEAD/OPTIONS/TRACE: Django's form
views take PUT as a POST) in two token buckets, and answers **429** with ``Retry-After`` before the view runs,
so a refused attempt hashes nothing and touches neither the database nor the cache (microseconds):

* per client address: ``LOGIN_RATE_PER_ADDRESS`` attempts a minute (default 30), all of them at once if need be
  (a person who mistypes a few times is never held up);
* overall: ``LOGIN_RATE_OVERALL`` attempts a minute (default 60), at most a quarter of them at once
  (:data:`OVERALL_BURST_SHARE`), which bounds the CPU a flood from many addresses can take: at 0.2 s a hash,
  60 a minute is a fifth of a core;
* and one sign-in at a time (:data:`MAX_IN_FLIGHT`): an attempt that arrives while another is being checked
  is refused at once (``Retry-After: 1``) instead of taking a second thread and core. A flood's first burst
  then hashes on one core of the process, one attempt after the other, while its other threads serve
  annotators; people signing in one by one never meet it (a check takes a fraction of a second).

Successful sign-ins count too (a flood of right passwords hashes as much). The counts live in the middleware
instance: one per worker process (gunicorn's ``-w 2`` admits twice the rates), forgotten on restart. The
answer: ``{"detail", "code": "rate_limited"}`` under ``/api/``, a short HTML page elsewhere. Requests that are
not sign-ins (an annotator's token or session requests) are never counted nor refused.

The client address is ``REMOTE_ADDR``, as django-axes takes it (the project sets no ``AXES_IPWARE_*``, so axes
reads ``REMOTE_ADDR`` only): behind a reverse proxy, the proxy must pass the client's address as
``REMOTE_ADDR``, or every client shares the proxy's address and its per-address budget. Memory is bounded:
at most :data:`MAX_ADDRESSES` addresses are remembered, those idle for a minute (their bucket full again, as
good as forgotten) are dropped first. ``LOGIN_RATE_LIMITING=false`` turns the limiter off (explicitly; the
rates themselves must be at least 1).
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

# The sign-in endpoints, by URL name: the login page, the API's token endpoint, the Django admin's login.
SIGN_IN_VIEWS = frozenset({"login", "api-token", "admin:login"})
MAX_IN_FLIGHT = 1  # sign-ins being checked at once, per process
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
WINDOW_SECONDS = 60.0  # the rates are per minute
OVERALL_BURST_SHARE = 0.25  # the overall bucket holds a quarter of a minute's attempts (per address: all of them)
MAX_ADDRESSES = 10_000  # addresses remembered at most (about 1 MB); the oldest go first
LOG_EVERY_SECONDS = 60.0  # refusals are logged as one summary line at most this often

clock = time.monotonic  # read through the module, so tests can move time forward
logger = logging.getLogger("config.login_rate")


class TokenBucket:
    """``rate`` attempts per :data:`WINDOW_SECONDS`, up to ``capacity`` at once. Not thread-safe by itself."""

    __slots__ = ("capacity", "per_second", "tokens", "updated")

    def __init__(self, rate: int, capacity: float, now: float):
        self.capacity = float(capacity)
        self.per_second = rate / WINDOW_SECONDS
        self.tokens = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
            self.updated = now

    def wait(self) -> float:
        """Seconds until one attempt is admitted (0 if one is now)."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.per_second


class LoginRateLimiter:
    """The two buckets, the per-address table and the sign-ins in flight, behind one lock."""

    def __init__(
        self, per_address: int, overall: int, max_addresses: int = MAX_ADDRESSES, max_in_flight: int = MAX_IN_FLIGHT
    ):
        self.per_address = per_address
        self.max_addresses = max_addresses
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.lock = threading.Lock()
        self.overall = TokenBucket(overall, max(1.0, overall * OVERALL_BURST_SHARE), clock())
        self.addresses: OrderedDict[str, TokenBucket] = OrderedDict()  # least recently seen first
        self.refused = {"address": 0, "overall": 0, "busy": 0}
        self.last_log = clock()

    def attempt(self, address: str) -> tuple[str, float] | None:
        """Count one attempt from ``address``: None if admitted (then :meth:`done` when it has been
        answered), else (which limit: ``address``, ``overall`` or ``busy``, seconds to wait)."""
        with self.lock:
            now = clock()
            bucket = self.addresses.pop(address, None)
            self._forget_idle(now)
            if bucket is None:
                bucket = TokenBucket(self.per_address, self.per_address, now)
            self.addresses[address] = bucket  # the most recently seen, last
            bucket.refill(now)
            self.overall.refill(now)
            refused = None
            if bucket.wait():
                refused = ("address", bucket.wait())
            elif self.overall.wait():
                refused = ("overall", self.overall.wait())
            elif self.in_flight >= self.max_in_flight:
                refused = ("busy", 1.0)
            if refused is None:  # only an admitted attempt spends: a refused one costs nothing
                bucket.tokens -= 1.0
                self.overall.tokens -= 1.0
                self.in_flight += 1
            else:
                self.refused[refused[0]] += 1
            self._log_refusals(now)
            return refused

    def done(self) -> None:
        """An admitted attempt has been answered."""
        with self.lock:
            self.in_flight -= 1

    def _forget_idle(self, now: float) -> None:
        """Drop addresses idle for a whole window (their bucket is full again: as good as new), and the least
        recently seen while the table is full (room for one more: the address being counted)."""
        while self.addresses:
            address, oldest = next(iter(self.addresses.items()))
            if now - oldest.updated < WINDOW_SECONDS and len(self.addresses) < self.max_addresses:
                break
            del self.addresses[address]

    def _log_refusals(self, now: float) -> None:
        if now - self.last_log < LOG_EVERY_SECONDS or not any(self.refused.values()):
            return
        logger.warning(
            "sign-in attempts refused in the last %.0f s: %d over the per-address limit (%d/min), %d over the "
            "overall limit, %d while another was being checked; %d addresses tracked",
            now - self.last_log,
            self.refused["address"],
            self.per_address,
            self.refused["overall"],
            self.refused["busy"],
            len(self.addresses),
        )
        self.refused = {"address": 0, "overall": 0, "busy": 0}
        self.last_log = now


def is_sign_in(request) -> bool:
    if request.method in SAFE_METHODS:
        return False
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return match.view_name in SIGN_IN_VIEWS


def refused_response(request, limit: str, wait: float) -> HttpResponse:
    seconds = max(1, math.ceil(wait))
    who = {"address": "from your address", "overall": "on this server", "busy": "at this moment"}[limit]
    detail = f"Too many sign-in attempts {who}; try again in {seconds} s."
    if request.path_info.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": detail, "code": "rate_limited"}, status=429)
    else:
        response = HttpResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Too many sign-in attempts'
            f"</title></head><body><h1>Too many sign-in attempts</h1><p>{html.escape(detail)}</p></body></html>",
            status=429,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response


class LoginRateMiddleware:
    """Place it before anything that hashes a password or writes an axes row (right after
    ``ServiceUnavailableMiddleware``). Settings: ``LOGIN_RATE_LIMITING``, ``LOGIN_RATE_PER_ADDRESS``,
    ``LOGIN_RATE_OVERALL`` (read when the middleware is built, once per process)."""

    def __init__(self, get_response):
        if not settings.LOGIN_RATE_LIMITING:
            raise MiddlewareNotUsed("LOGIN_RATE_LIMITING is off")
        self.get_response = get_response
        self.limiter = LoginRateLimiter(settings.LOGIN_RATE_PER_ADDRESS, settings.LOGIN_RATE_OVERALL)

    def __call__(self, request):
        if is_sign_in(request):
            refused = self.limiter.attempt(request.META.get("REMOTE_ADDR") or "")
            if refused is not None:
                return refused_response(request, *refused)
            try:
                return self.get_response(request)
            finally:
                self.limiter.done()
        return self.get_response(request)

"""Outages of the database or the task queue answer 503 with ``Retry-After``, not a 500 crash.

:class:`ServiceUnavailableMiddleware` turns ``django.db.OperationalError`` / ``InterfaceError`` (the
database refused or dropped the connection) and broker errors (:class:`config.celery.BrokerUnavailable`,
kombu's ``OperationalError``, redis connection errors) into

* ``/api/...`` (or a request that accepts JSON and not HTML): ``503 {"detail", "code":
  "service_unavailable", "service": "database"|"queue", "retry_after"}``;
* pages: ``templates/503.html`` (rendered without the request context, so without the database);

both with ``Retry-After: RETRY_AFTER_SECONDS``. Errors raised by a view are caught in
``process_exception``; errors raised by another middleware (a session read while the database is down)
reach Django's 500 handling, where ``got_request_exception`` notes them on the request and ``__call__``
swaps the 500 for the 503. Place it right after ``SecurityMiddleware``. The error is still logged with
its traceback. Nothing here retries: a request after the service returns simply succeeds (Django
drops a broken database connection at the end of the failed request).
"""

from __future__ import annotations

import logging
import sys

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from config.celery import BrokerUnavailable, broker_errors

RETRY_AFTER_SECONDS = 30
_MESSAGES = {
    "database": "The database is unavailable at the moment; nothing was changed. Try again shortly.",
    "queue": "The task queue is unavailable at the moment, so the work was not started. Try again shortly.",
}
logger = logging.getLogger("config.outage")


def outage_of(exc: BaseException) -> str | None:
    """``"database"``, ``"queue"`` or None: which service ``exc`` says is unavailable."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    if isinstance(exc, (BrokerUnavailable, *broker_errors())):
        return "queue"
    return None


def _wants_json(request) -> bool:
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def unavailable_response(request, service: str) -> HttpResponse:
    message = _MESSAGES[service]
    if _wants_json(request):
        response = JsonResponse(
            {"detail": message, "code": "service_unavailable", "service": service, "retry_after": RETRY_AFTER_SECONDS},
            status=503,
        )
    else:
        html = render_to_string(
            "503.html", {"message": message, "service": service, "retry_after": RETRY_AFTER_SECONDS}
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _note_exception(sender, request=None, **kwargs) -> None:
    """Django's 500 path: remember an outage on the request so the middleware can answer 503."""
    exc = sys.exc_info()[1]
    if request is not None and exc is not None and outage_of(exc):
        request._service_outage = outage_of(exc)


got_request_exception.connect(_note_exception, dispatch_uid="config.middleware.note_outage")


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        service = getattr(request, "_service_outage", None)
        if service and response.status_code == 500:
            return unavailable_response(request, service)
        return response

    def process_exception(self, request, exception):
        service = outage_of(exception)
        if service is None:
            return None
        logger.error(
            "%s unavailable during %s %s: %s", service, request.method, request.path, exception, exc_info=exception
        )
        return unavailable_response(request, service)

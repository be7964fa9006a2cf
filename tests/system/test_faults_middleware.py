"""config.middleware.ServiceUnavailableMiddleware inside Django's request handling (no outage needed):
which errors become 503 + Retry-After, in which shape, and which stay 500s."""

from __future__ import annotations

import json

import pytest
from django.core.handlers.exception import convert_exception_to_response
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory
from kombu.exceptions import OperationalError as KombuOperationalError

from config.celery import BrokerUnavailable
from config.middleware import ServiceUnavailableMiddleware


def _serve(path: str, exc: Exception, *, in_view: bool = True, accept: str = "text/html"):
    """Send a request through the middleware to a view (or an inner middleware) that raises ``exc``."""
    request = RequestFactory().get(path, HTTP_ACCEPT=accept)

    def failing(request):
        raise exc

    if in_view:  # as Django does: process_exception sees the view's exception
        middleware = ServiceUnavailableMiddleware(lambda r: None)
        try:
            failing(request)
        except Exception as raised:
            return middleware.process_exception(request, raised)
    middleware = ServiceUnavailableMiddleware(convert_exception_to_response(failing))
    return middleware(request)


@pytest.mark.parametrize(
    "exc, service",
    [
        (OperationalError("connection refused"), "database"),
        (InterfaceError("connection already closed"), "database"),
        (BrokerUnavailable("no broker"), "queue"),
        (KombuOperationalError("Error 111 connecting"), "queue"),
    ],
)
def test_it_answers_api_outages_with_a_503_json_and_retry_after(exc, service):
    response = _serve("/api/queue/next/", exc)
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response["Cache-Control"] == "no-store"
    body = json.loads(response.content)
    assert body["code"] == "service_unavailable" and body["service"] == service and body["retry_after"] == 30


def test_it_answers_page_outages_with_the_503_page():
    response = _serve("/annotate/", OperationalError("server closed the connection unexpectedly"))
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    assert b"Temporarily unavailable" in response.content and b"database is unavailable" in response.content


def test_it_answers_json_to_a_page_request_that_accepts_only_json():
    response = _serve("/curation/jobs/1/", BrokerUnavailable("x"), accept="application/json")
    assert json.loads(response.content)["service"] == "queue"


def test_it_turns_an_outage_raised_outside_the_view_into_a_503(settings):
    settings.DEBUG = False
    response = _serve("/", OperationalError("the session table is unreachable"), in_view=False)
    assert response.status_code == 503 and response["Retry-After"] == "30"


def test_it_leaves_other_errors_to_the_500_handler(settings):
    settings.DEBUG = False
    assert _serve("/api/me/", ValueError("a bug")) is None
    response = _serve("/", ValueError("a bug"), in_view=False)
    assert response.status_code == 500 and "Retry-After" not in response

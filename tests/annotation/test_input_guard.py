"""Hostile JSON bodies are refused with a clear 4xx before the parser's recursion or a query
(annotation/input_guard.py): deep nesting (400 too_deep), oversized bodies (413 body_too_large),
lone surrogates (400 unencodable_text), and bodies of the wrong type (400) on every queue endpoint.
Each of these answered 500 before (RecursionError, AttributeError, psycopg's encoding error)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from annotation.input_guard import MAX_JSON_DEPTH, json_depth
from annotation.models import Judgement, Lease
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


def raw_post(client, path, body: bytes):
    return client.generic("POST", path, body, content_type="application/json")


@pytest.fixture
def annotator_client():
    make_pair("RU")
    client = APIClient()
    client.force_authenticate(make_user("guarded", disciplines=["chemistry"]))
    return client


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_deeply_nested_json_is_a_400_for_anonymous_token_requests(levels):
    body = b'{"username": ' + b"[" * levels + b"]" * levels + b', "password": "x"}'
    response = raw_post(APIClient(), "/api/auth/token/", body)
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_deeply_nested_json_is_a_400_on_the_judgement_endpoint(annotator_client):
    lease = annotator_client.post("/api/queue/next/").json()
    body = b'{"choice": "left", "comment": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = raw_post(annotator_client, f"/api/leases/{lease['lease_id']}/judgement/", body)
    assert response.status_code == 400
    assert not Judgement.objects.exists()


def test_nesting_up_to_the_limit_is_parsed_and_brackets_inside_strings_do_not_count():
    assert json_depth(b'{"a": "[[[[{{{{", "b": "\\\\", "c": "\\"[["}') == 1
    assert json_depth(json.dumps([[[]]]).encode()) == 3
    deep_ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    too_deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    client = APIClient()
    assert raw_post(client, "/api/auth/token/", deep_ok).status_code == 400  # parsed: a list is no credentials
    assert "nested deeper" not in str(raw_post(client, "/api/auth/token/", deep_ok).content)
    assert "nested deeper" in raw_post(client, "/api/auth/token/", too_deep).json()["detail"]


def test_a_body_over_the_upload_limit_is_a_413_in_json(settings, annotator_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "x" * 2000, "password": "y"}).encode()
    response = raw_post(APIClient(), "/api/auth/token/", body)  # read by Django first (login throttling)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    lease = annotator_client.post("/api/queue/next/").json()
    body = json.dumps({"choice": "left", "comment": "x" * 2000}).encode()
    response = raw_post(annotator_client, f"/api/leases/{lease['lease_id']}/judgement/", body)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert not Judgement.objects.exists()


def test_an_unhandled_error_under_the_api_is_a_json_500(client, monkeypatch):
    from annotation.services import queue

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(queue, "next_lease", broken)
    client.raise_request_exception = False
    client.force_login(make_user("unlucky", disciplines=["chemistry"]))
    response = client.post("/api/queue/next/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Server error.", "code": "server_error"}
    assert client.get("/api/no-such-endpoint/").json()["code"] == "not_found"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"x"', b"42", b"null", b'{"task": ["RU"]}', b'{"task": {"a": 1}}'])
def test_next_refuses_a_body_that_is_not_an_object_of_strings(annotator_client, body):
    response = raw_post(annotator_client, "/api/queue/next/", body)
    assert response.status_code == 400, response.content
    assert not Lease.objects.exists()


def test_next_takes_its_filters_from_an_object_body_or_the_query_string(annotator_client):
    assert raw_post(annotator_client, "/api/queue/next/", b'{"task": "GR"}').status_code == 204
    assert raw_post(annotator_client, "/api/queue/next/?task=GR", b'{"task": "RU"}').status_code == 204
    assert raw_post(annotator_client, "/api/queue/next/", b'{"task": "ru"}').status_code == 200


@pytest.mark.parametrize("path", ["/api/queue/next/", "/api/auth/token/", "/api/judgements/undo/"])
def test_a_lone_surrogate_is_a_400_not_a_database_error(annotator_client, path):
    body = b'{"task": "\\ud800", "username": "\\udfff", "password": "x", "judgement_id": "\\ud800"}'
    response = raw_post(annotator_client, path, body)
    assert response.status_code == 400, response.content
    assert "surrogate" in response.json()["detail"]


def test_lone_surrogates_in_a_judgement_comment_are_refused_and_nothing_is_written(annotator_client):
    lease = annotator_client.post("/api/queue/next/").json()
    body = b'{"choice": "left", "comment": "ok \\udc80"}'
    response = raw_post(annotator_client, f"/api/leases/{lease['lease_id']}/judgement/", body)
    assert response.status_code == 400
    assert not Judgement.objects.exists()
    fine = raw_post(
        annotator_client,
        f"/api/leases/{lease['lease_id']}/judgement/",
        '{"choice": "left", "comment": "ok \\ud83d\\ude00 ☃"}'.encode(),
    )
    assert fine.status_code == 201  # a surrogate *pair* is a real character (😀)

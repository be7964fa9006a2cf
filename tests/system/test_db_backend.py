"""The PostgreSQL backend's health check (config/postgresql/base.py): a healthy idle connection is kept
without a round trip; one the server closed is still found out and replaced before the request uses it."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),  # as every transactional test here
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL backend"),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _start_request(monkeypatch) -> list[int]:
    """Django's state at the start of a request with health checks (persistent connections); returns
    the list that records every fallback to the round-trip check."""
    wrapper = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the proxy
    monkeypatch.setattr(wrapper, "health_check_enabled", True)
    monkeypatch.setattr(wrapper, "health_check_done", False)
    checks = []
    real = type(wrapper).is_usable
    monkeypatch.setattr(type(wrapper), "is_usable", lambda self: checks.append(1) or real(self))
    return checks


def test_it_keeps_a_healthy_idle_connection_without_a_round_trip(monkeypatch):
    assert type(connections[DEFAULT_DB_ALIAS]).__module__ == "config.postgresql.base"
    pid = _backend_pid()
    checks = _start_request(monkeypatch)
    assert _backend_pid() == pid and checks == []
    assert connections[DEFAULT_DB_ALIAS].health_check_done


def test_it_replaces_a_connection_the_server_closed_before_the_request_uses_it(monkeypatch):
    pid = _backend_pid()
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    dsn = f"host={host} port={port} user={settings['USER']} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the termination message and the end of file reach the socket
    checks = _start_request(monkeypatch)
    new_pid = _backend_pid()  # no error: the broken connection was closed and a new one opened
    assert new_pid != pid and checks == [1]

"""Shared pieces of the outage tests (broker, result backend, database behind a
:class:`tests.support.tcp_proxy.TcpProxy`): addresses of the real services, and a stand-in task that records
what a service would have queued (for sweeps tested without a broker)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection


def database_address() -> tuple[str, int]:
    db = connection.settings_dict
    return db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)


def database_url(port: int, host: str = "127.0.0.1") -> str:
    """The test database's URL, reached through ``host:port`` (a proxy's port, or the real one)."""
    db = connection.settings_dict
    return f"postgres://{db.get('USER') or 'postgres'}@{host}:{port}/{db['NAME']}"


def broker_address() -> tuple[str, int, str]:
    """(host, port, database number) of the test's Redis broker."""
    url = urlsplit(settings.CELERY_BROKER_URL)
    return url.hostname or "127.0.0.1", url.port or 6379, url.path.lstrip("/") or "0"


class RecordingTask:
    """Takes the place of a Celery task for a service that queues one: records the calls, sends nothing."""

    def __init__(self):
        self.sent: list[tuple[tuple, dict]] = []

    def delay(self, *args, **kwargs):
        self.sent.append((args, kwargs))

    def apply_async(self, args=(), kwargs=None, **options):
        self.sent.append((tuple(args), {**(kwargs or {}), **options}))

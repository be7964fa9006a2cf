"""The Celery application. Configuration lives in Django settings under the CELERY_ prefix.

:func:`publish` is how services enqueue. Whatever the send raises (kombu's ``OperationalError`` for an
unreachable broker, the ``RuntimeError`` "Retry limit exceeded ... result store backend" of a Redis result
backend that cannot subscribe to the task's result, a timeout, anything) means "not queued": the caller's
``on_failure`` marks the row that waited for the message (failed, visibly), and :class:`BrokerUnavailable`
is raised, which ``config.middleware.ServiceUnavailableMiddleware`` answers with a 503 and ``Retry-After``.
How long that takes is bounded by the settings (config/settings.py, "Celery"): the broker's and the Redis
result backend's connect timeouts and retry policies, a few seconds in all, never Celery's default of
about 20 s for a Redis result backend.

A successful send calls ``on_published``, with which a service records when the message went out
(``enqueued_at``): a row still queued without it, :data:`ENQUEUE_GRACE_SECONDS` after it was created, has no
message behind it (its process died between the commit and the send, or could not record the refusal), and
the stuck-work sweeps (``curation.services.jobs.sweep``, ``ml.services.runs.lifecycle.sweep``) fail it.

:func:`heartbeat` is the thread that keeps ``heartbeat_at`` of a running run or job fresh; it survives a
database outage (it skips the beats it cannot write), so a stale heartbeat means the process is gone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager, suppress

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("scit2i")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("config.celery")

#: Seconds a freshly created queued row may stand without ``enqueued_at`` before it counts as having no
#: message: far longer than a bounded publish (a few seconds), so a send still in progress is never taken
#: for a lost one.
ENQUEUE_GRACE_SECONDS = 60.0


#: How often a task whose body lost the database is retried (see :func:`database_retry_countdown`)
#: before it gives up; its row is then left ``running`` with a stale heartbeat, for the sweep.
DATABASE_RETRIES = 6


def database_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the database went away" (Django's OperationalError and InterfaceError)."""
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def database_retry_countdown(retries: int) -> float:
    """Seconds before the next try of a task that lost the database, after ``retries`` tries.

    ``ML_STALE_AFTER_SECONDS`` (+1), doubled on each try, at most 15 minutes: by the time the retry runs,
    the failed try's heartbeat is stale, so the retry takes the row over instead of finding it "busy".
    """
    from django.conf import settings

    return min((settings.ML_STALE_AFTER_SECONDS + 1) * 2**retries, 900.0)


class BrokerUnavailable(RuntimeError):
    """The message broker could not be reached, so a task was not queued."""


def broker_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the broker is unreachable" (Celery wraps most in kombu's OperationalError)."""
    from kombu.exceptions import OperationalError

    errors: list[type[BaseException]] = [OperationalError, ConnectionError, TimeoutError]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis is a dependency, but the broker may be RabbitMQ
        pass
    else:
        errors += [RedisConnectionError, RedisTimeoutError]
    return tuple(errors)


def publish(send, on_failure=None, on_published=None):
    """Call ``send()`` (e.g. ``lambda: task.apply_async(...)``) and return what it returns.

    If it raises anything, call ``on_failure(exc)`` (to mark the row that waited for this message) and
    raise :class:`BrokerUnavailable`. If it succeeds, call ``on_published()`` (to record that a message
    stands behind the row). A callback that fails (the database went away too) is logged and swallowed:
    the row is then left for the stuck-work sweep, and the answer stays the one about the queue.
    """
    try:
        result = send()
    except Exception as exc:
        logger.error("task not queued: %s: %s", type(exc).__name__, exc, exc_info=exc)
        if on_failure is not None:
            try:
                on_failure(exc)
            except Exception:
                logger.exception("could not record that a task was not queued; the stuck-work sweep will")
        raise BrokerUnavailable(f"the task queue is unavailable: {type(exc).__name__}: {exc}") from exc
    if on_published is not None:
        try:
            on_published()
        except Exception:
            logger.exception("a task was queued but its row could not record it; the stuck-work sweep will")
    return result


@contextmanager
def heartbeat(touch: Callable[[], object], every: float):
    """Call ``touch()`` every ``every`` seconds from a thread while the body runs.

    ``touch`` writes ``heartbeat_at``; a write that fails (database outage) is skipped and the thread's
    connection closed, so the next beat reconnects: the heartbeat stops only with the body or the process.
    """
    from django.db import DatabaseError, connection

    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(every):
                try:
                    touch()
                except DatabaseError as exc:
                    logger.warning("heartbeat not written (database unavailable?): %s", exc)
                    with suppress(DatabaseError):
                        connection.close()
        finally:
            with suppress(DatabaseError):
                connection.close()

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

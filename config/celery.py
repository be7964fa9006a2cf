"""The Celery application. Configuration lives in Django settings under the CELERY_ prefix.

:func:`publish` is how services enqueue: a broker that cannot be reached raises
:class:`BrokerUnavailable` (after Celery's publish retries, about a second), which
``config.middleware.ServiceUnavailableMiddleware`` answers with a 503 and ``Retry-After``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("scit2i")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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


def publish(send, on_failure=None):
    """Call ``send()`` (e.g. ``lambda: task.apply_async(...)``); if the broker is unreachable, call
    ``on_failure(exc)`` (to mark the row that waited for this message) and raise :class:`BrokerUnavailable`."""
    try:
        return send()
    except broker_errors() as exc:
        if on_failure is not None:
            on_failure(exc)
        raise BrokerUnavailable(f"the task queue is unavailable: {exc}") from exc

"""Statistics over every judgement, served from a shared cache and refreshed in the background.

The dashboard and the agreement page show figures (α, κ, the Cohen matrix, progress and outcome
counts) that need a scan of every judgement and pair in scope: tens of milliseconds at 10,000 pairs,
close to a second at 100,000. Rather than scanning on every request, a page asks :func:`figures` for a
snapshot:

* no snapshot yet: computed now, stored in the default cache (``CACHES``: Redis or a file cache, shared
  by every web process) and served;
* younger than ``FIGURES_MAX_AGE`` seconds: served as it is;
* older: served as it is, marked ``refreshing``, and one refresh task (the caller's ``celery_task``:
  ``curation.tasks.refresh_figures``) is queued to recompute it (a cache ``add`` lets one request in
  ``FIGURES_MAX_AGE`` queue it);
* older than ``FIGURES_MAX_STALE`` seconds (no worker took the refresh): computed now, as with none.

So page time no longer grows with the data, and the figures are at most about ``FIGURES_MAX_AGE`` plus
one refresh behind; the pages print when they were computed. ``FIGURES_MAX_AGE = 0`` computes on every
request (the test settings do this, so tests see exact figures). The JSON API computes on every call.

Imports: ``curation/tasks.py`` imports this module, so this module never imports it: the pages pass the
refresh task to :func:`figures` (see curation/services/jobs.py for the rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from curation.services.agreement import agreement_report
from curation.services.dashboard import dashboard

log = logging.getLogger(__name__)

# Name → the service function whose result is cached (called with the snapshot's parameters).
SOURCES: dict[str, Callable[..., Any]] = {
    "dashboard": dashboard,
    "agreement": agreement_report,
}


@dataclass(frozen=True)
class Snapshot:
    value: Any
    computed_at: datetime
    refreshing: bool = False


def cache_key(name: str, params: dict) -> str:
    """The cache key of a figure: its name and a digest of its parameters."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    return f"figures:{name}:{digest}"


def compute(name: str, params: dict) -> Snapshot:
    """Compute the figures now and store them (what the background refresh runs)."""
    value = SOURCES[name](**params)
    snapshot = Snapshot(value, timezone.now())
    key = cache_key(name, params)
    cache.set(key, (snapshot.computed_at, value), timeout=None)
    cache.delete(f"{key}:refresh")
    return snapshot


def figures(name: str, *, celery_task, **params) -> Snapshot:
    """The figures of ``SOURCES[name](**params)``, from the cache when fresh enough (see the module docstring).

    ``celery_task`` recomputes a stale snapshot in the background: ``celery_task.delay(name, params)``
    (``curation.tasks.refresh_figures``).
    """
    if name not in SOURCES:
        raise KeyError(f"unknown figures {name!r}")
    max_age = settings.FIGURES_MAX_AGE
    if max_age <= 0:
        return Snapshot(SOURCES[name](**params), timezone.now())
    key = cache_key(name, params)
    cached = cache.get(key)
    if cached is None:
        return compute(name, params)
    computed_at, value = cached
    age = timezone.now() - computed_at
    if age <= timedelta(seconds=max_age):
        return Snapshot(value, computed_at)
    if age > timedelta(seconds=settings.FIGURES_MAX_STALE):
        return compute(name, params)
    if cache.add(f"{key}:refresh", True, timeout=max_age):
        _queue_refresh(celery_task, name, params, key)
    return Snapshot(value, computed_at, refreshing=True)


def _queue_refresh(celery_task, name: str, params: dict, key: str) -> None:
    try:
        celery_task.delay(name, params)
    except Exception:  # the broker is down: serve what there is; the next request after max_age tries again
        log.exception("could not queue the refresh of %s", key)
        cache.delete(f"{key}:refresh")

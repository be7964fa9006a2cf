"""Cached page figures (curation.services.figures): fresh snapshots are served as they are, stale ones
are served while one background refresh recomputes them, very stale ones are recomputed in the request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from curation.services import figures
from curation.tasks import refresh_figures
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached(settings):
    settings.FIGURES_MAX_AGE = 60
    settings.FIGURES_MAX_STALE = 900


def pairs_in(board) -> int:
    return sum(row.pairs for row in board.tasks)


def age(name: str, params: dict, seconds: int) -> None:
    """Make the stored snapshot ``seconds`` old."""
    key = figures.cache_key(name, params)
    computed_at, value = cache.get(key)
    cache.set(key, (timezone.now() - timedelta(seconds=seconds), value), timeout=None)


PARAMS = {"discipline": None, "days": 14}


def test_it_serves_a_fresh_snapshot_without_recomputing(cached):
    make_pair("RU")
    first = figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    make_pair("RU")
    second = figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    assert pairs_in(first.value) == pairs_in(second.value) == 1
    assert second.computed_at == first.computed_at and not second.refreshing


def test_it_serves_a_stale_snapshot_and_queues_one_refresh(cached, eager_celery):
    make_pair("RU")
    figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    make_pair("RU")
    age("dashboard", PARAMS, 120)
    stale = figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    assert stale.refreshing and pairs_in(stale.value) == 1  # served as it was...
    refreshed = figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    assert not refreshed.refreshing and pairs_in(refreshed.value) == 2  # ...while the refresh stored the new one


def test_it_queues_the_refresh_once_while_one_is_pending(cached):
    make_pair("RU")
    figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    age("dashboard", PARAMS, 120)
    key = figures.cache_key("dashboard", PARAMS)
    assert figures.figures("dashboard", **PARAMS, celery_task=refresh_figures).refreshing
    assert cache.get(f"{key}:refresh") is True  # a second request finds the refresh pending and queues nothing
    assert not cache.add(f"{key}:refresh", True)


def test_it_recomputes_in_the_request_when_no_refresh_came_for_too_long(cached):
    make_pair("RU")
    figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    make_pair("RU")
    age("dashboard", PARAMS, 1000)
    snapshot = figures.figures("dashboard", **PARAMS, celery_task=refresh_figures)
    assert not snapshot.refreshing and pairs_in(snapshot.value) == 2


def test_it_keeps_one_snapshot_per_set_of_filters(cached):
    make_pair("RU")  # chemistry
    everything = figures.figures("dashboard", discipline=None, days=14, celery_task=refresh_figures)
    physics = figures.figures("dashboard", discipline="physics", days=14, celery_task=refresh_figures)
    assert pairs_in(everything.value) == 1 and pairs_in(physics.value) == 0


def test_it_computes_on_every_request_when_the_max_age_is_zero(settings):
    settings.FIGURES_MAX_AGE = 0
    make_pair("RU")
    assert pairs_in(figures.figures("dashboard", **PARAMS, celery_task=refresh_figures).value) == 1
    make_pair("RU")
    assert pairs_in(figures.figures("dashboard", **PARAMS, celery_task=refresh_figures).value) == 2


def test_it_refuses_an_unknown_name():
    with pytest.raises(KeyError):
        figures.figures("everything", celery_task=refresh_figures)


@pytest.mark.parametrize("page", ["curation:dashboard", "curation:agreement"])
def test_the_pages_say_when_their_figures_were_computed(client, cached, page):
    client.force_login(make_user("boss", "admin"))
    make_pair("RU")
    body = client.get(reverse(page)).content.decode()
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M")
    assert "as of " + stamp in body
    age(page.split(":")[1], figures_params(page), 120)
    assert "being refreshed" in client.get(reverse(page)).content.decode()


def figures_params(page: str) -> dict:
    if page == "curation:dashboard":
        return PARAMS
    from curation.services.agreement import DEFAULT_MIN_SHARED

    return {"task": None, "discipline": None, "min_shared": DEFAULT_MIN_SHARED}

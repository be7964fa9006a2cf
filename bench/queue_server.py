"""Server side of the queue benchmark: the query-counting middleware and the bench URLconf.

Loaded only through ``bench/queue_settings.py`` (``DJANGO_SETTINGS_MODULE=bench.queue_settings``,
or ``queue_settings`` for the server of an older tree: see there). ``BENCH_QUEUE_BASELINE=0`` leaves
the baseline's URLs out (the server of ``--before`` serves only the product's). Every response says
which source tree served it (``X-Bench-Tree``: the folder ``config`` was imported from), so the
load generator can check that ``before`` and ``ours`` are the trees it meant.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

from django.db import connection
from django.urls import include, path

import config

TREE = str(Path(config.__file__).resolve().parent.parent)


class QueryCountMiddleware:
    """Counts every SQL statement Django sends during the request (savepoints included; BEGIN and
    COMMIT are not statements Django executes) and the time spent in them, and reports both in
    response headers the load generator reads."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        stats = {"n": 0, "s": 0.0}

        def count(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                stats["n"] += 1
                stats["s"] += time.perf_counter() - started

        with connection.execute_wrapper(count):
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(stats["n"])
        response["X-Bench-DB-Ms"] = f"{stats['s'] * 1000:.3f}"
        response["X-Bench-Tree"] = TREE
        return response


def _baseline_urls() -> list:
    if os.environ.get("BENCH_QUEUE_BASELINE", "1") == "0":
        return []
    package = __name__.rpartition(".")[0]
    queue_baseline = importlib.import_module(f"{package}.queue_baseline" if package else "queue_baseline")
    return [
        path("bench/baseline/queue/next/", queue_baseline.NextView.as_view(), name="bench-baseline-next"),
        path(
            "bench/baseline/leases/<int:lease_id>/judgement/",
            queue_baseline.JudgementView.as_view(),
            name="bench-baseline-judgement",
        ),
    ]


urlpatterns = [*_baseline_urls(), path("", include("config.urls"))]

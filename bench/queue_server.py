"""Server side of the queue benchmark: the query-counting middleware and the bench URLconf.

Loaded only through ``bench/queue_settings.py`` (``DJANGO_SETTINGS_MODULE=bench.queue_settings``).
"""

from __future__ import annotations

import time

from django.db import connection
from django.urls import include, path

from bench import queue_baseline


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
        return response


urlpatterns = [
    path("bench/baseline/queue/next/", queue_baseline.NextView.as_view(), name="bench-baseline-next"),
    path("bench/baseline/leases/<int:lease_id>/judgement/", queue_baseline.JudgementView.as_view(),
         name="bench-baseline-judgement"),
    path("", include("config.urls")),
]

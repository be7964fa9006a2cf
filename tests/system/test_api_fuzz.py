"""Fuzz every operation of the API from its own OpenAPI schema, as every role: no server error.

How: the schema is loaded from ``/api/schema/`` of the Django WSGI app (``schemathesis.openapi.from_wsgi``)
and every operation is fuzzed with schemathesis' Hypothesis strategies, in process (werkzeug's WSGI client),
against a real PostgreSQL test database seeded with :func:`tests.support.fuzz_world.build_world`. Each operation gets
three derandomized Hypothesis runs (``EXAMPLES`` cases each), and every generated case is sent once as each
role: anonymous, annotator, reviewer and admin (DRF token auth; generated Authorization headers are dropped).

* ``positive``: data valid for the schema, path parameters generated (mostly ids that do not exist);
* ``world``: data valid for the schema, with the path parameters and the body fields that name objects (ids,
  codes, credentials, a file to import) taken from the world (operations with either only);
* ``negative``: data that violates the schema (wrong types, missing fields, out-of-range values); operations
  with nothing to violate (no parameters, no body) are listed as ``unsatisfiable`` in the report.

Every request runs inside a savepoint that is rolled back after it, so a DELETE, an activation or a judgement
never changes the world the next request sees; for the same reason ``transaction.on_commit`` callbacks never
fire, so the endpoints that enqueue Celery work (runs, exports, imports, schedule firings) write their rows
and return without sending anything to a broker, and nothing waits for a worker.

Checks (``CHECKS``) on every response: ``not_a_server_error`` (no 5xx) and the OpenAPI conformance checks
``status_code_conformance`` (the status code is documented), ``content_type_conformance`` and
``response_schema_conformance`` (the body matches the documented schema), except:

* a request that no URL pattern matches (a path parameter of the wrong type) is answered by Django's URL
  resolver before any API code: only ``not_a_server_error`` applies;
* ``UNCHECKED`` names the operations where a conformance check cannot apply, with the reason.

Each request is counted per operation, role and mode, with its status code; the counts are printed (``-s``)
and written to ``api_fuzz_counts.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import Counter, defaultdict
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.fuzz_world import ROLES, build_world

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Cases per (operation, mode), each sent as every role; the run stays within a few minutes on two loaded
# cores. API_FUZZ_SCALE=10 multiplies them for a deeper (still derandomized) run by hand; API_FUZZ_ONLY=text
# fuzzes only the operations whose label contains the text.
SCALE = float(os.environ.get("API_FUZZ_SCALE", "1"))
EXAMPLES = {mode: max(1, round(n * SCALE)) for mode, n in {"positive": 6, "world": 8, "negative": 8}.items()}
# Checks that cannot apply to an operation, and why.
UNCHECKED = {
    # The file's bytes, documented as binary of any media type: schemathesis would parse a .json file (and a
    # byte range of one) as JSON and validate it against the binary string schema.
    "GET /api/curation/versions/{version_id}/exports/{export_format}/{path}": (response_schema_conformance,),
}


@contextmanager
def in_process_requests():
    """Requests share the test's connection and transaction, as with Django's test client: the handler's
    request signals must not close the connection (Django's ClientHandler disconnects them the same way)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class Recorder:
    def __init__(self):
        self.counts = defaultdict(Counter)  # operation label -> Counter of (role, mode)
        self.statuses = defaultdict(Counter)  # operation label -> Counter of status codes
        self.failures = {}  # (label, check title) -> first failure text
        self.tracebacks = []
        self.unsatisfiable = []
        self.seconds = Counter()  # time spent sending requests and checking responses
        got_request_exception.connect(self._on_exception)

    def _on_exception(self, sender, request=None, **kwargs):
        self.tracebacks.append(traceback.format_exc())

    def close(self):
        got_request_exception.disconnect(self._on_exception)


def routed(response) -> bool:
    """Whether a URL pattern matched the request: a path parameter of the wrong type (``/api/pairs/0.5/``)
    matches none, and Django's URL resolver answers 404 itself, before any API code (HTML under DEBUG)."""
    try:
        resolve(unquote(urlsplit(response.request.url).path))
    except Resolver404:
        return False
    return True


def checks_for(operation, response) -> list:
    if not routed(response):
        return [not_a_server_error]
    excluded = UNCHECKED.get(operation.label, ())
    return [check for check in CHECKS if check not in excluded]


def send(case, role, mode, world, recorder):
    """One request as ``role``, in a savepoint rolled back afterwards; its response checked and counted."""
    label, headers = case.operation.label, world.headers(role)
    started = time.perf_counter()
    with transaction.atomic():
        response = case.call(headers=headers)
        transaction.set_rollback(True)
    recorder.seconds["requests"] += time.perf_counter() - started
    recorder.counts[label][(role, mode)] += 1
    recorder.statuses[label][response.status_code] += 1
    started = time.perf_counter()
    try:
        case.validate_response(response, checks=checks_for(case.operation, response), headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            recorder.failures.setdefault(
                (label, failure.title),
                f"[{role}/{mode}] {case.method} "
                f"{case.formatted_path} -> {response.status_code}\n{failure.message[:1500]}"
                f"\nquery={case.query!r:.300} body={case.body!r:.600}",
            )
    recorder.seconds["checks"] += time.perf_counter() - started


def world_strategy(operation, world):
    """Positive cases whose path parameters and object-naming body fields come from the world."""
    paths, fields = world.path_values.get(operation.path), world.body_values.get(operation.label, {})
    if not paths and not (fields and "{" not in operation.path):
        return None
    cases = st.sampled_from(paths or [{}]).flatmap(
        lambda pp: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pp or None)
    )
    return st.tuples(cases, st.fixed_dictionaries({name: st.sampled_from(v) for name, v in fields.items()}))


def fuzz_operation(operation, mode, world, recorder):
    """``EXAMPLES[mode]`` derandomized cases of one operation, each sent once as every role."""
    if mode == "world":
        strategy = world_strategy(operation, world)
        if strategy is None:
            return
    else:
        strategy = st.tuples(operation.as_strategy(GenerationMode(mode)), st.just({}))

    @given(drawn=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(drawn):
        case, fields = drawn
        if fields and isinstance(case.body, dict):
            case.body.update(fields)
        # Credentials come from the role alone, never from generated headers.
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"} or None
        for role in ROLES:
            send(case, role, mode, world, recorder)

    try:
        run()
    except Unsatisfiable:  # nothing of this operation can violate the schema (no parameters, no body)
        recorder.unsatisfiable.append(f"{operation.label} ({mode})")


def summary(recorder, operations, elapsed) -> dict:
    by_role, by_mode = Counter(), Counter()
    for counter in recorder.counts.values():
        for (role, mode), n in counter.items():
            by_role[role] += n
            by_mode[mode] += n
    per_operation = {
        label: {"total": sum(c.values()), **{role: sum(n for (r, _), n in c.items() if r == role) for role in ROLES}}
        for label, c in sorted(recorder.counts.items())
    }
    return {
        "seconds": round(elapsed, 1),
        "seconds_in": {k: round(v, 1) for k, v in recorder.seconds.items()},
        "operations": len(operations),
        "requests": sum(by_role.values()),
        "per_role": dict(by_role),
        "per_mode": dict(by_mode),
        "per_operation": per_operation,
        "server_errors": sum(n for c in recorder.statuses.values() for code, n in c.items() if code >= 500),
        "statuses": {label: dict(sorted(c.items())) for label, c in sorted(recorder.statuses.items())},
        "unsatisfiable": recorder.unsatisfiable,
        "failures": {f"{label} :: {title}": text for (label, title), text in sorted(recorder.failures.items())},
    }


def test_it_answers_every_generated_request_without_a_server_error(tmp_path, settings):
    settings.IMPORT_ROOTS = [str(tmp_path / "imports")]
    # The sign-in rate limit (config/login_rate.py, tested in test_login_flood.py) would answer most of the
    # token endpoint's generated requests with 429 before they reach it: off here, so they are fuzzed.
    settings.LOGIN_RATE_LIMITING = False
    app = WSGIHandler()
    world = build_world(tmp_path / "imports")
    recorder = Recorder()
    started = time.monotonic()
    try:
        with in_process_requests():
            schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
            operations = [result.ok() for result in schema.get_all_operations()]
            only = os.environ.get("API_FUZZ_ONLY")  # by hand: the operations whose label contains this
            operations = [op for op in operations if not only or only in op.label]
            for operation in operations:
                for mode in EXAMPLES:
                    fuzz_operation(operation, mode, world, recorder)
    finally:
        recorder.close()
    report = summary(recorder, operations, time.monotonic() - started)
    (tmp_path / "api_fuzz_counts.json").write_text(json.dumps(report, indent=1))
    print(
        f"\napi fuzz: {report['requests']} requests, {report['operations']} operations, {report['seconds']} s "
        f"{report['seconds_in']}; per role {report['per_role']}; per mode {report['per_mode']}; "
        f"{report['server_errors']} server errors; written to {tmp_path / 'api_fuzz_counts.json'}"
    )
    for label, counts in report["per_operation"].items():
        print(f"  {counts['total']:4d}  {label}  {report['statuses'][label]}")
    for key, text in report["failures"].items():
        print(f"FAIL {key}\n{text}\n")
    for text in recorder.tracebacks[:10]:
        print(text)

    assert {op.label for op in operations} == set(report["per_operation"]), "every operation was fuzzed"
    assert all(report["per_operation"][op.label][role] for op in operations for role in ROLES), "as every role"
    assert report["failures"] == {}, "\n".join(report["failures"])
    assert report["server_errors"] == 0

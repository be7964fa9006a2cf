"""The queue load benchmark's harness (bench/queue_load.py) at a tiny size: it serves the real
endpoints with gunicorn on the test database, drives annotators through next → judge, finds no
violation in a correct run, and its checker reports exactly the violations injected after the run
(a pair handed to k + 1 annotators, a pair leased twice to one annotator). The timing itself is a
command, not a test."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.support.paths import REPO

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the queue benchmark runs on PostgreSQL"),
]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_queue_load", REPO / "bench" / "queue_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _server_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/postgres"


def test_the_harness_runs_both_queues_cleanly_and_its_checker_finds_injected_violations(tmp_path):
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "queue_load.py"), "--database-url", _server_url(),
         "--db-name", connection.settings_dict["NAME"], "--sizes", "120", "--k", "3", "--duration", "1.5",
         "--warmup", "0.3", "--workers", "2", "--inject-violation", "--no-doc", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())

    runs = {r["impl"]: r for r in summary["results"]}
    assert set(runs) == {"ours", "baseline"}
    for run in runs.values():
        assert run["judge"]["statuses"].get("201", 0) > 0 and run["errors"] == 0
        assert run["next"]["queries_per_request"] > 0  # counted on the server
        v = run["violations"]
        assert (v["over_k"], v["twice_to_one_annotator"], v["counter_mismatch"], v["outside_expertise"]) == (0, 0, 0, 0)
        assert v["judgements"] > 0
    assert summary["violations_total"] == 0

    # After each run the harness inserted one pair leased to k + 1 annotators and one second lease
    # of a judged pair to the same annotator: the checker must see exactly those.
    for injected in summary["injected"]:
        v = injected["violations"]
        assert (v["over_k"], v["twice_to_one_annotator"]) == (1, 1), injected

    # The same checker, run here on what the last run left, agrees; and removing the injected rows
    # brings it back to zero, so it is the injected rows it counts.
    bench = _bench()
    found = bench.check_violations()
    assert (found["over_k"], found["twice_to_one_annotator"]) == (1, 1)
    from annotation.models import Lease

    Lease.objects.filter(annotator__username__startswith="bench-injected-").delete()
    Lease.objects.filter(state=Lease.State.EXPIRED, judgement__isnull=True).delete()
    found = bench.check_violations()
    assert (found["over_k"], found["twice_to_one_annotator"]) == (0, 0)

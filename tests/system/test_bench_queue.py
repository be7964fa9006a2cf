"""The queue load benchmark's harness (bench/queue_load.py) at a tiny size: it serves the real
endpoints with gunicorn on the test database and drives annotators through what the annotate page
does per pair (next → both images → heartbeat → judge); the images are real files it seeded, served
with their bytes; it finds no violation in a correct run, and its checker reports exactly the
violations injected after the run (a pair handed to k + 1 annotators, a pair leased twice to one
annotator). With --before it serves an older source tree from a second server (here: a copy of this
tree without bench/, so the bench settings must come from this checkout's bench/) and compares the
two over repeated runs. The timing itself is a command, not a test."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
from django.db import connection

from tests.support.paths import REPO

KINDS = ("next", "image", "heartbeat", "judge")

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


def _run_bench(tmp_path, *options: str) -> dict:
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "queue_load.py"),
            "--database-url",
            _server_url(),
            "--db-name",
            connection.settings_dict["NAME"],
            "--media-root",
            str(tmp_path / "media"),
            "--warmup",
            "0.3",
            "--workers",
            "2",
            "--json",
            str(out),
            *options,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def _assert_clean(run: dict) -> None:
    """Every request of the loop answered, images with their bytes, and nothing broke a rule."""
    assert run["judge"]["statuses"].get("201", 0) > 0 and run["errors"] == 0, run
    assert set(run["image"]["statuses"]) == {"200"} and set(run["heartbeat"]["statuses"]) == {"200"}
    # one heartbeat and two images per pair leased in the window (give or take the pair in flight
    # at each end of it)
    assert abs(run["image"]["n"] - 2 * run["next"]["n"]) <= 2 * 8
    assert abs(run["heartbeat"]["n"] - run["next"]["n"]) <= 8
    for kind in KINDS:
        assert run[kind]["queries_per_request"] > 0  # counted on the server
    v = run["violations"]
    assert (v["over_k"], v["twice_to_one_annotator"], v["counter_mismatch"], v["outside_expertise"]) == (0, 0, 0, 0)
    assert v["judgements"] > 0


def test_the_harness_runs_both_queues_cleanly_and_its_checker_finds_injected_violations(tmp_path):
    summary = _run_bench(tmp_path, "--sizes", "120", "--k", "3", "--duration", "1.5", "--inject-violation", "--no-doc")

    runs = {r["impl"]: r for r in summary["results"]}
    assert set(runs) == {"ours", "baseline"}
    for run in runs.values():
        _assert_clean(run)
    assert summary["violations_total"] == 0

    # The seeded images are real files under --media-root: each row holds its file's true size and
    # sha256 (so the image endpoint served them above, and the client checked the bytes).
    from annotation.models import Image

    images = list(Image.objects.order_by("id"))
    assert len(images) == 240 and len({i.sha256 for i in images}) == 240
    for image in images[::40]:
        data = (tmp_path / "media" / image.file.name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) == image.size_bytes
        assert hashlib.sha256(data).hexdigest() == image.sha256

    # Every seeded annotator may judge every discipline.
    from annotation.models import Expertise

    for expertise in Expertise.objects.filter(user__username__startswith="bench-annotator-"):
        assert set(expertise.disciplines.values_list("slug", flat=True)) == {"physics", "chemistry", "biology"}

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


def test_before_serves_another_tree_and_the_runs_alternate_with_their_spread(tmp_path):
    # An "older tree": a copy of this one without bench/ (as a commit before the benchmark would be)
    before = tmp_path / "before"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("config", "annotation", "curation", "ml", "science_t2i", "templates", "static"):
        shutil.copytree(REPO / name, before / name, ignore=ignore)
    shutil.copy2(REPO / "manage.py", before / "manage.py")
    doc = tmp_path / "queue.md"

    summary = _run_bench(
        tmp_path,
        "--before",
        str(before),
        "--impls",
        "before,ours",
        "--repeat",
        "2",
        "--sizes",
        "150",
        "--k",
        "8",
        "--duration",
        "1",
        "--doc",
        str(doc),
    )

    # before, ours, before, ours: each served by its own server (the harness checked each server's
    # tree when it started), every run clean
    assert [(r["impl"], r["repeat"]) for r in summary["results"]] == [
        ("before", 1),
        ("ours", 1),
        ("before", 2),
        ("ours", 2),
    ]
    for run in summary["results"]:
        _assert_clean(run)
    assert summary["trees"]["before"]["path"] == str(before)

    # Each figure over the repeats: mean within min–max, and the spread is max − min.
    groups = {g["impl"]: g for g in summary["aggregated"]}
    for impl, group in groups.items():
        jps = group["judgements_per_s"]
        values = [r["judgements_per_s"] for r in summary["results"] if r["impl"] == impl]
        assert (jps["min"], jps["max"], jps["n"]) == (min(values), max(values), 2)
        assert jps["min"] <= jps["mean"] <= jps["max"] and jps["spread"] == pytest.approx(jps["max"] - jps["min"])

    # next p95 at K = 8, before against after, with a verdict against the measured spread.
    (row,) = summary["before_after"]
    assert row["figure"] == "next p95 ms at K = 8" and row["spread_measured"]
    assert row["before"] == groups["before"]["next"]["p95_ms"]["mean"]
    assert row["after"] == groups["ours"]["next"]["p95_ms"]["mean"]
    spread = max(groups["before"]["next"]["p95_ms"]["spread"], groups["ours"]["next"]["p95_ms"]["spread"])
    assert row["spread"] == spread
    expected = "within spread" if abs(row["difference"]) <= spread else "better" if row["difference"] < 0 else "worse"
    assert row["verdict"] == expected

    text = doc.read_text()
    assert "## Before vs after" in text and "| next p95 ms at K = 8 | 150 |" in text
    assert f"--before {before}" in text  # the command that wrote it
    # (the copy is this tree's code, unless someone edits it during the run)
    if not summary["trees"]["differing"]["code"]:
        assert "every difference between `before` and `ours` below is run-to-run spread" in text


def test_the_trees_are_compared_by_code_not_by_formatting(tmp_path):
    bench = _bench()
    before, ours = tmp_path / "before", tmp_path / "ours"
    for tree, queue, rows in (
        (before, "def f(a, b):\n    return a + b\n", "X = 1\n"),
        (ours, "def f(a,b):  # formatted differently\n    return (a + b)\n", "X = 2\n"),
    ):
        (tree / "annotation" / "services").mkdir(parents=True)
        (tree / "annotation" / "services" / "queue.py").write_text(queue)
        (tree / "annotation" / "services" / "rows.py").write_text(rows)
        (tree / "config").mkdir()
        (tree / "config" / "same.py").write_text("Y = 3\n")
    (ours / "config" / "new.py").write_text("Z = 4\n")

    assert bench.differing_files(before, ours) == {
        "files": ["annotation/services/queue.py", "annotation/services/rows.py", "config/new.py"],
        "code": ["annotation/services/rows.py", "config/new.py"],
    }

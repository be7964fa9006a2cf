#!/usr/bin/env python
"""Queue under load: the annotator queue served by gunicorn on PostgreSQL, driven over loopback.

What it does, in one command (see docs/benchmarks/queue.md for the figures it wrote last):

1. creates (if missing) and migrates a dedicated database (``scit2i_bench_queue`` by default) on
   the PostgreSQL server of ``--database-url`` (default: ``$DATABASE_URL``'s server, else
   ``postgres://postgres@127.0.0.1:5432``);
2. for each size (``--sizes``, default 20,000 and 100,000 pairs), seeds the pairs with COPY (one
   prompt tuple, two images and one pair per pair, k = 3, spread over the 16 seeded tasks). Every
   image is a real file in the storage: a distinct 32 × 32 PNG of about 3 KB under ``--media-root``
   (default ``var/bench/queue-media``; written once, reused by later runs), its row holding its true
   sha256, size, dimensions and format, so the image endpoint serves it. Then 32 annotators with API
   tokens, each of whom may judge every discipline (physics, chemistry, biology);
3. serves the platform with gunicorn (``--workers`` workers, default 2, of ``--threads`` threads,
   default 4, keep-alive; ``--threads 1`` for sync workers), production settings plus
   ``bench/queue_settings.py`` (a server-side query counter and the baseline's URLs). With
   ``--before PATH`` (a checkout of an older commit, e.g. ``git worktree add /tmp/bench-before
   <rev>``; same virtualenv) a second gunicorn, configured the same, serves that tree's code against
   the same database and ``MEDIA_ROOT``, with this checkout's bench settings and middleware;
4. for each K (``--k``, default 1, 8, 32), ``--repeat`` times, and each implementation (``--impls``):
   ``before`` (the product endpoints served from ``--before``), ``ours`` (the product endpoints
   ``POST /api/queue/next/`` and ``POST /api/leases/<id>/judgement/`` of this checkout),
   ``baseline`` (``bench/queue_baseline.py``, the simplest correct queue, at ``/bench/baseline/...``),
   alternating (before, ours, baseline, before, ours, baseline, …): resets the queue state (no
   leases, no judgements, every pair open), then runs K simulated annotators (threads in
   ``--client-procs`` processes, http.client with token auth; ``bench/queue_load_client.py``) each
   doing per pair what the annotate page does: next → GET both images of the lease (the URLs of its
   payload; a 200 with the right bytes, else an error) → one heartbeat → judge, for ``--warmup`` +
   ``--duration`` seconds; only the last ``--duration`` seconds are measured;
5. after each run checks the database for violations (must be 0): a pair handed to more than k
   annotators (live or judged leases, or judgements), a pair handed twice to one annotator (two
   leases or two judgements), plus consistency checks (``judgement_count`` and status against
   the rows, leases outside the annotator's expertise);
6. prints tables and a JSON summary (``bench/queue_load_report.py``): every figure as the mean and
   min–max over the repeats, each implementation against the baseline, and with ``--before`` the
   two figures issue 14 guards (judgements/s at K = 32, ``next`` p95 at K = 8) before vs after with
   the run-to-run spread and a verdict; writes docs/benchmarks/queue.md (not with ``--quick``
   unless ``--doc`` is given).

Run it from the repository root::

    .venv/bin/python bench/queue_load.py            # ours vs baseline (a few minutes)
    .venv/bin/python bench/queue_load.py --quick    # a smoke run at a small size
    git worktree add /tmp/bench-before HEAD~3       # then: before vs ours, twice each
    .venv/bin/python bench/queue_load.py --before /tmp/bench-before --impls before,ours --sizes 20000 --repeat 2

Benchmarks are commands, not timed tests: every figure is reported next to the other
implementations measured in the same run on the same machine, since absolute numbers move with the
machine's load.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import shlex
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.* imports from the repository root
    sys.path.insert(0, str(REPO))

from bench import queue_load_report as report  # noqa: E402
from bench.queue_load_client import run_load  # noqa: E402

DEFAULT_DB = "scit2i_bench_queue"
DEFAULT_DOC = REPO / "docs" / "benchmarks" / "queue.md"
DEFAULT_MEDIA = REPO / "var" / "bench" / "queue-media"
N_ANNOTATORS_MAX = 32
K_OVERLAP = 3
DISCIPLINES = ("physics", "chemistry", "biology")
# Which server serves each implementation, and its paths ({} is the lease id). Images come from
# the URLs of the lease's payload; heartbeats go to the product endpoint of the same server.
IMPLS = {
    "before": {
        "server": "before",
        "next": "/api/queue/next/",
        "judge": "/api/leases/{}/judgement/",
        "heartbeat": "/api/leases/{}/heartbeat/",
    },
    "ours": {
        "server": "ours",
        "next": "/api/queue/next/",
        "judge": "/api/leases/{}/judgement/",
        "heartbeat": "/api/leases/{}/heartbeat/",
    },
    "baseline": {
        "server": "ours",
        "next": "/bench/baseline/queue/next/",
        "judge": "/bench/baseline/leases/{}/judgement/",
        "heartbeat": "/api/leases/{}/heartbeat/",
    },
}
# What --before compares: the Python code of these folders in the two trees.
CODE_DIRS = ("annotation", "curation", "ml", "config")
SECRET = "bench-only-secret-key-not-for-production-0123456789-abcdefghijklmnop"


# --- Options --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default=None, help="pair counts, comma-separated (default 20000,100000; --quick: 600)")
    p.add_argument(
        "--k", dest="ks", default=None, help="annotator counts K, comma-separated (default 1,8,32; --quick: 1,8)"
    )
    p.add_argument("--duration", type=float, default=None, help="measured seconds per run (default 15; --quick: 3)")
    p.add_argument(
        "--warmup", type=float, default=None, help="unmeasured seconds before each run (default 2; --quick: 1)"
    )
    p.add_argument(
        "--before",
        default=None,
        metavar="PATH",
        help="a checkout of an older commit (git worktree add PATH REV; same virtualenv): a second "
        "server runs its code, measured as the implementation 'before'",
    )
    p.add_argument(
        "--impls",
        "--impl",
        dest="impls",
        default=None,
        help="implementations to run, comma-separated, from before,ours,baseline (default "
        "ours,baseline; with --before: before,ours,baseline)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each (size, K, implementation), the implementations alternating (default 1); "
        "the spread between them is the run-to-run spread",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="gunicorn worker processes (default 2, one per core here; at least 2)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads per gunicorn worker: more than 1 = gthread workers with keep-alive (default 4); "
        "1 = sync workers (gunicorn's default class: one request at a time, no keep-alive)",
    )
    p.add_argument("--client-procs", type=int, default=0, help="client processes (default: one per 16 annotators)")
    p.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="DATABASE_CONN_MAX_AGE for the server (persistent connections; default 60)",
    )
    p.add_argument("--database-url", default=None, help="PostgreSQL server URL (the database name is replaced)")
    p.add_argument(
        "--db-name",
        default=DEFAULT_DB,
        help=f"the dedicated database, emptied by every run: its name must contain 'bench' or start "
        f"with 'test_' (default {DEFAULT_DB})",
    )
    p.add_argument(
        "--media-root",
        default=str(DEFAULT_MEDIA),
        help=f"MEDIA_ROOT of every bench server, where the seeded images are written "
        f"(default {DEFAULT_MEDIA.relative_to(REPO)})",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run at a small size; does not write the doc")
    p.add_argument("--doc", default=None, help=f"markdown file to write (default {DEFAULT_DOC.relative_to(REPO)})")
    p.add_argument("--no-doc", action="store_true", help="do not write the markdown file")
    p.add_argument("--json", dest="json_out", default=None, help="also write the JSON summary to this file")
    p.add_argument(
        "--inject-violation",
        action="store_true",
        help="(for the harness's own test) after each run insert one over-k pair and one pair leased "
        "twice to an annotator, and check again: the checker must report exactly those",
    )
    args = p.parse_args(argv)
    args.sizes = _ints(args.sizes or ("600" if args.quick else "20000,100000"))
    args.ks = _ints(args.ks or ("1,8" if args.quick else "1,8,32"))
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 15.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    default_impls = "before,ours,baseline" if args.before else "ours,baseline"
    args.impls = [name.strip() for name in (args.impls or default_impls).split(",") if name.strip()]
    unknown = set(args.impls) - set(IMPLS)
    if unknown or not args.impls or len(set(args.impls)) != len(args.impls):
        p.error(f"--impls takes distinct names from {', '.join(IMPLS)} (got {', '.join(args.impls) or 'none'})")
    if "before" in args.impls and not args.before:
        p.error("the implementation 'before' needs --before PATH")
    if args.before:
        args.before = Path(args.before).resolve()
        if not (args.before / "config" / "wsgi.py").is_file():
            p.error(f"--before {args.before}: not a checkout of this project (no config/wsgi.py)")
        if args.before == REPO and "before" in args.impls:
            print("note: --before is this checkout: 'before' and 'ours' serve the same code", flush=True)
        if "before" not in args.impls:
            p.error("--before given, but 'before' is not among --impls")
    if args.repeat < 1:
        p.error("--repeat is at least 1")
    if args.workers < 2:
        p.error("--workers must be at least 2 (a production server)")
    if "bench" not in args.db_name and not args.db_name.startswith("test_"):
        p.error(
            f"refusing to empty {args.db_name!r}: the bench database's name must contain 'bench' "
            "(or start with 'test_')"
        )
    if max(args.ks) > N_ANNOTATORS_MAX:
        p.error(f"K is at most {N_ANNOTATORS_MAX}")
    args.media_root = Path(args.media_root).resolve()
    if args.no_doc:
        args.doc = None
    elif args.doc is None and not args.quick:
        args.doc = str(DEFAULT_DOC)
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


# --- Database ------------------------------------------------------------------------------


def server_url(args) -> str:
    url = args.database_url or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    return url


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def ensure_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(with_db(url, "postgres").replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def server_env(db_url: str, conn_max_age: int, media_root: Path, before: Path | None = None) -> dict[str, str]:
    """The environment of a bench server (and of this process's Django). ``before``: the server of
    an older tree, which imports that tree's packages first and then this checkout's ``bench/`` as
    top-level modules (``queue_settings``, ``queue_server``: the bench settings and middleware are
    always this checkout's), without the baseline's URLs (the older tree may lack what they import)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.queue_settings",
        DATABASE_URL=db_url,
        DATABASE_CONN_MAX_AGE=str(conn_max_age),
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        MEDIA_ROOT=str(media_root),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    if before is not None:
        env.update(
            DJANGO_SETTINGS_MODULE="queue_settings",
            BENCH_QUEUE_BASELINE="0",
            PYTHONPATH=os.pathsep.join([str(before), str(REPO / "bench")]),
        )
    return env


def setup_django(db_url: str, conn_max_age: int, media_root: Path) -> None:
    os.environ.update(server_env(db_url, conn_max_age, media_root))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _table(model) -> str:
    return model._meta.db_table


def _reset_tables():
    from annotation.models import AuditEvent, Judgement, Lease
    from curation.models import AnnotatorQuality, Consensus

    return [_table(m) for m in (Lease, Judgement, AuditEvent, Consensus, AnnotatorQuality)]


PNG_SIDE = 32
_PNG_NOISE = random.Random(20240).randbytes(2 * PNG_SIDE * PNG_SIDE * 3)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(i: int) -> bytes:
    """Image ``i``: a valid 32 × 32 RGB PNG of noise (about 3 KB), distinct for every ``i`` (its first
    pixels are ``i``), the same on every call."""
    row = PNG_SIDE * 3
    offset = (i * 97) % (len(_PNG_NOISE) // 2)
    pixels = struct.pack(">Q", i) + _PNG_NOISE[offset + 8 : offset + PNG_SIDE * row]
    raw = b"".join(b"\x00" + pixels[r * row : (r + 1) * row] for r in range(PNG_SIDE))  # filter 0 per row
    header = struct.pack(">IIBBBBB", PNG_SIDE, PNG_SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 1))
        + _png_chunk(b"IEND", b"")
    )


def ensure_image_files(media_root: Path, n: int) -> list[tuple[str, str, int]]:
    """Images 1..n as files under ``media_root``, at the storage key the platform gives uploads
    (``images/<sha256[:2]>/<sha256>.png``); files already there are kept. (key, sha256, size) each."""
    from annotation.services.catalog import storage_key

    out = []
    for i in range(1, n + 1):
        data = png_bytes(i)
        digest = hashlib.sha256(data).hexdigest()
        key = storage_key(digest, "png")
        path = media_root / key
        if not path.is_file() or path.stat().st_size != len(data):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.part")
            partial.write_bytes(data)
            os.replace(partial, path)  # a parallel run writing the same file is harmless
        out.append((key, digest, len(data)))
    return out


def seed(n_pairs: int, media_root: Path) -> float:
    """Replace every tuple, image and pair with ``n_pairs`` fresh open pairs (COPY), their images
    real files under ``media_root``; seconds taken."""
    from django.db import connection

    from annotation.models import Image, Pair, PromptTuple, Task, normalise_prompt

    started = time.perf_counter()
    files = ensure_image_files(media_root, 2 * n_pairs)
    tables = [*_reset_tables(), _table(Pair), _table(Image), _table(PromptTuple)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    tasks = list(Task.objects.order_by("id").values_list("id", flat=True))
    now = dt.datetime.now(dt.UTC)
    raw = connection.connection  # psycopg 3
    with raw.cursor() as cur:
        with cur.copy(
            f"COPY {_table(PromptTuple)} (id, implicit_prompt, implicit_normalised, explicit_prompt, "
            "superficial_prompt, task_id, subject, scene, source, provenance, implicit_paraphrases, "
            "explicit_paraphrases, superficial_paraphrases, scene_scoring, real_scoring, created_at, updated_at) "
            "FROM STDIN"
        ) as copy:
            for i in range(1, n_pairs + 1):
                prompt = f"Bench scene {i}: an iron nail left outside in the rain for weeks."
                copy.write_row(
                    (
                        i,
                        prompt,
                        normalise_prompt(prompt),
                        f"A rusty nail {i}.",
                        f"A shiny nail {i}.",
                        tasks[i % len(tasks)],
                        "nail",
                        "simple",
                        "bench",
                        "{}",
                        "[]",
                        "[]",
                        "[]",
                        "",
                        "",
                        now,
                        now,
                    )
                )
        with cur.copy(
            f"COPY {_table(Image)} (id, file, sha256, width, height, format, size_bytes, kind, tuple_id, "
            "generator, seed, created_at) FROM STDIN"
        ) as copy:
            for i, (key, digest, size) in enumerate(files, start=1):
                copy.write_row(
                    (
                        i,
                        key,
                        digest,
                        PNG_SIDE,
                        PNG_SIDE,
                        "PNG",
                        size,
                        "explicit" if i % 2 else "superficial",
                        (i + 1) // 2,
                        "",
                        None,
                        now,
                    )
                )
        with cur.copy(
            f"COPY {_table(Pair)} (id, tuple_id, image_correct_id, image_wrong_id, status, k, is_gold, "
            "is_qualification, judgement_count, priority, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, n_pairs + 1):
                copy.write_row((i, i, 2 * i - 1, 2 * i, "open", K_OVERLAP, False, False, 0, 0.0, now))
    with connection.cursor() as cursor:
        for model in (PromptTuple, Image, Pair):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{_table(model)}', 'id'), %s)", [max(n_pairs, 1) * 2])
        cursor.execute(f"ANALYZE {_table(PromptTuple)}, {_table(Image)}, {_table(Pair)}")
    return time.perf_counter() - started


def reset_queue() -> None:
    """Back to the seeded state: no leases, judgements, audit events or consensus; every pair open."""
    from django.db import connection

    from annotation.models import Pair

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_reset_tables())} CASCADE")
        cursor.execute(
            f"UPDATE {_table(Pair)} SET judgement_count = 0, status = 'open' "
            "WHERE judgement_count <> 0 OR status <> 'open'"
        )
        # Fresh statistics for the pairs. The emptied tables are deliberately *not* analysed: a
        # table analysed while empty keeps "0 rows" statistics until autovacuum catches up, and
        # plans for an empty table are not the plans a platform in use runs; a truncated,
        # never-analysed table is estimated from its current size instead, as it grows.
        cursor.execute(f"VACUUM ANALYZE {_table(Pair)}")


def ensure_annotators(n: int) -> list[dict]:
    """``n`` annotators with tokens, each of whom may judge every discipline."""
    from rest_framework.authtoken.models import Token

    from annotation.services import people

    out = []
    for i in range(n):
        disciplines = list(DISCIPLINES)
        user, _ = people.ensure_user(f"bench-annotator-{i:02d}", role="annotator", disciplines=disciplines)
        token, _ = Token.objects.get_or_create(user=user)
        out.append({"username": user.username, "id": user.id, "token": token.key, "disciplines": disciplines})
    return out


# --- Violations ----------------------------------------------------------------------------


def check_violations() -> dict:
    """Read the database after a run. ``over_k`` and ``twice_to_one_annotator`` must be 0; the
    consistency counts must be 0 too (they would mean a broken service, not a race)."""
    from django.db import connection

    from annotation.models import Expertise, Judgement, Lease, Pair, PromptTuple, Task

    pair, lease, judgement = _table(Pair), _table(Lease), _table(Judgement)
    tuple_, task, expertise = _table(PromptTuple), _table(Task), _table(Expertise)
    ex_tasks = Expertise._meta.get_field("tasks").remote_field.through._meta.db_table
    ex_disc = Expertise._meta.get_field("disciplines").remote_field.through._meta.db_table
    queries = {
        # More leases handed out (still live, or judged) or more judgements than k. In a benchmark
        # run no lease expires, is skipped or undone, so every such lease held a slot.
        "over_k": f"""
            SELECT count(*) FROM {pair} p WHERE NOT p.is_gold AND (
                (SELECT count(*) FROM {lease} l WHERE l.pair_id = p.id AND l.state IN ('active', 'judged')) > p.k
                OR (SELECT count(*) FROM {judgement} j WHERE j.pair_id = p.id) > p.k)""",
        # One pair leased twice (any state) or judged twice by one annotator.
        "twice_to_one_annotator": f"""
            SELECT count(*) FROM (
                SELECT pair_id, annotator_id FROM {lease} GROUP BY pair_id, annotator_id HAVING count(*) > 1
                UNION
                SELECT pair_id, annotator_id FROM {judgement} GROUP BY pair_id, annotator_id HAVING count(*) > 1
            ) AS twice""",
        "counter_mismatch": f"""
            SELECT count(*) FROM {pair} p
            WHERE p.judgement_count <> (SELECT count(*) FROM {judgement} j WHERE j.pair_id = p.id)
               OR (NOT p.is_gold AND p.status <> 'retired'
                   AND (p.status = 'complete') <> (p.judgement_count >= p.k))""",
        "outside_expertise": f"""
            SELECT count(*) FROM {lease} l
            JOIN {pair} p ON p.id = l.pair_id JOIN {tuple_} t ON t.id = p.tuple_id JOIN {task} tk ON tk.id = t.task_id
            LEFT JOIN {expertise} e ON e.user_id = l.annotator_id
            WHERE NOT EXISTS (SELECT 1 FROM {ex_tasks} et WHERE et.expertise_id = e.id AND et.task_id = tk.id)
              AND NOT EXISTS (SELECT 1 FROM {ex_disc} ed WHERE ed.expertise_id = e.id
                              AND ed.discipline_id = tk.discipline_id)""",
        "judgements": f"SELECT count(*) FROM {judgement}",
        "leases": f"SELECT count(*) FROM {lease}",
    }
    out = {}
    with connection.cursor() as cursor:
        for name, sql in queries.items():
            cursor.execute(sql)
            out[name] = cursor.fetchone()[0]
    return out


def inject_violations() -> None:
    """One pair handed to k + 1 annotators, and one pair leased twice to one annotator (test only)."""
    from django.utils import timezone

    from annotation.models import Lease, Pair
    from annotation.services import people

    now = timezone.now()
    # k + 1 more judged leases put any pair over k; a pair nobody leased is preferred, but a fast run
    # may have leased every pair of a small seed
    pairs = Pair.objects.filter(is_gold=False).order_by("-id")
    fresh = pairs.filter(leases__isnull=True).first() or pairs.first()
    for i in range(fresh.k + 1):
        user, _ = people.ensure_user(f"bench-injected-{i}", role="annotator", disciplines=list(DISCIPLINES))
        Lease.objects.create(
            pair=fresh,
            annotator=user,
            left_image_id=fresh.image_correct_id,
            right_image_id=fresh.image_wrong_id,
            state=Lease.State.JUDGED,
            expires_at=now,
            ended_at=now,
        )
    judged = Lease.objects.filter(state=Lease.State.JUDGED).exclude(pair=fresh).order_by("id").first()
    Lease.objects.create(
        pair_id=judged.pair_id,
        annotator_id=judged.annotator_id,
        left_image_id=judged.left_image_id,
        right_image_id=judged.right_image_id,
        state=Lease.State.EXPIRED,
        expires_at=now,
        ended_at=now,
    )


# --- The servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving ``tree`` (this checkout, or an older one: ``before``) on a free port."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path, threads: int = 1, tree: Path = REPO):
        self.port, self.tree = free_port(), tree
        self.cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--chdir",
            str(tree),
            "--timeout",
            "120",
            "--log-level",
            "warning",
            "--preload",
        ]  # import the app once, then fork the workers
        # sync workers (gunicorn's default, one request at a time, no keep-alive), or gthread
        # workers with keep-alive when threads > 1
        self.cmd += (
            ["--worker-class", "sync"] if threads <= 1 else ["--worker-class", "gthread", "--threads", str(threads)]
        )
        self.log = open(log_path, "wb")  # noqa: SIM115 - open while the server runs; closed by stop()
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=tree, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("POST", IMPLS["ours"]["next"])
                resp = conn.getresponse()
                status, served_from = resp.status, resp.getheader("X-Bench-Tree")
                conn.close()
                if status in (401, 403):
                    if served_from != str(self.tree):
                        raise RuntimeError(f"the server meant to run {self.tree} runs {served_from}")
                    # every worker imports the app lazily: warm them up
                    for _ in range(20):
                        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                        c.request("POST", IMPLS["ours"]["next"])
                        c.getresponse().read()
                        c.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer in time; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _git(tree: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def describe_tree(tree: Path) -> dict:
    commit = _git(tree, "rev-parse", "--short", "HEAD") or "not a git checkout"
    if _git(tree, "status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS):
        commit += " + uncommitted changes"
    return {"path": str(tree), "commit": commit}


def differing_files(before: Path, ours: Path) -> dict[str, list[str]]:
    """The ``.py`` files of ``CODE_DIRS`` that differ between the two trees (or exist in one only):
    ``files``, every such file; ``code``, those whose syntax trees differ too (not only formatting
    or comments)."""

    def files(tree):
        return {
            str(p.relative_to(tree)): p
            for d in CODE_DIRS
            for p in (tree / d).rglob("*.py")
            if "__pycache__" not in p.parts
        }

    def code(path):
        try:
            return ast.dump(ast.parse(path.read_bytes()))
        except (SyntaxError, ValueError):
            return path.read_bytes()

    a, b = files(before), files(ours)
    changed = sorted(
        name
        for name in a.keys() | b.keys()
        if name not in a or name not in b or a[name].read_bytes() != b[name].read_bytes()
    )
    return {
        "files": changed,
        "code": [name for name in changed if name not in a or name not in b or code(a[name]) != code(b[name])],
    }


# --- Main ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(
        [
            "cd",
            shlex.quote(str(REPO)),
            "&&",
            ".venv/bin/python",
            "bench/queue_load.py",
            *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        ]
    )
    url = server_url(args)
    db_url = with_db(url, args.db_name)
    ensure_database(url, args.db_name)
    setup_django(db_url, args.conn_max_age, args.media_root)
    t0 = time.perf_counter()
    migrate()
    print(f"database {args.db_name} migrated in {time.perf_counter() - t0:.1f} s", flush=True)
    annotators = ensure_annotators(max(args.ks))
    info = report.machine()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    servers: dict[str, Server] = {}
    results, injected = [], []
    try:
        if {"ours", "baseline"} & set(args.impls):
            servers["ours"] = Server(
                server_env(db_url, args.conn_max_age, args.media_root),
                args.workers,
                log_dir / f"bench-queue-gunicorn-{os.getpid()}.log",
                threads=args.threads,
            )
        if "before" in args.impls:
            servers["before"] = Server(
                server_env(db_url, args.conn_max_age, args.media_root, before=args.before),
                args.workers,
                log_dir / f"bench-queue-gunicorn-before-{os.getpid()}.log",
                threads=args.threads,
                tree=args.before,
            )
        for server in servers.values():
            server.wait_ready()
        for n_pairs in args.sizes:
            seconds = seed(n_pairs, args.media_root)
            print(f"seeded {n_pairs:,} pairs and {2 * n_pairs:,} image files in {seconds:.1f} s", flush=True)
            for k in args.ks:
                for repeat in range(1, args.repeat + 1):
                    for impl in args.impls:
                        from django.db import connection

                        reset_queue()
                        connection.close()
                        spec = IMPLS[impl]
                        r = run_load(
                            servers[spec["server"]],
                            annotators[:k],
                            spec,
                            warmup=args.warmup,
                            duration=args.duration,
                            procs=args.client_procs,
                            seed=n_pairs + k + repeat,
                        )
                        r.update(pairs=n_pairs, K=k, impl=impl, repeat=repeat, violations=check_violations())
                        if args.inject_violation:
                            inject_violations()
                            injected.append(
                                {
                                    "pairs": n_pairs,
                                    "K": k,
                                    "impl": impl,
                                    "repeat": repeat,
                                    "violations": check_violations(),
                                }
                            )
                        results.append(r)
                        print(report.run_line(r), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    from django.conf import settings as django_settings

    aggregated = report.aggregate(results)
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "config": {
            "sizes": args.sizes,
            "K": args.ks,
            "impls": args.impls,
            "repeat": args.repeat,
            "duration": args.duration,
            "warmup": args.warmup,
            "workers": args.workers,
            "threads": args.threads,
            "conn_max_age": args.conn_max_age,
            "k_overlap": K_OVERLAP,
            "database": args.db_name,
            "media_root": str(args.media_root),
            "queue_lock_window": django_settings.QUEUE_LOCK_WINDOW,
            "gold_rate": django_settings.GOLD_RATE,
        },
        "aggregated": aggregated,
        "before_after": report.before_after(aggregated),
        "ratios": report.ratios(aggregated),
        "goals": report.goals(aggregated),
        "violations_total": sum(r["violations"]["over_k"] + r["violations"]["twice_to_one_annotator"] for r in results),
        "results": results,
    }
    if args.before:
        summary["trees"] = {
            "before": describe_tree(args.before),
            "ours": describe_tree(REPO),
            "differing": differing_files(args.before, REPO),
        }
    if injected:
        summary["injected"] = injected
    report.print_report(summary)
    print()
    print(json.dumps(summary, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))
    if args.doc:
        report.write_doc(Path(args.doc), summary)
        print(f"\nwrote {args.doc}")
    return 1 if summary["violations_total"] else 0


if __name__ == "__main__":
    sys.exit(main())

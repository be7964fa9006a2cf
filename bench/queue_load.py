#!/usr/bin/env python
"""Queue under load: the annotator queue served by gunicorn on PostgreSQL, driven over loopback.

What it does, in one command (see docs/benchmarks/queue.md for the figures it wrote last):

1. creates (if missing) and migrates a dedicated database (``scit2i_bench_queue`` by default) on
   the PostgreSQL server of ``--database-url`` (default: ``$DATABASE_URL``'s server, else
   ``postgres://postgres@127.0.0.1:5432``);
2. for each size (``--sizes``, default 20,000 and 100,000 pairs), seeds the pairs with COPY (one
   prompt tuple and two placeholder image rows per pair, k = 3, spread over the 16 seeded tasks),
   and 32 annotators with API tokens: annotator 0 knows every discipline, the others one each in
   turn (physics, chemistry, biology), so every pair has eligible annotators;
3. serves the platform with gunicorn (``--workers`` workers, default 2, of ``--threads`` threads,
   default 4, keep-alive; ``--threads 1`` for sync workers), production settings plus
   ``bench/queue_settings.py`` (a server-side query counter and the baseline's URLs);
4. for each K (``--k``, default 1, 8, 32) and each implementation (``ours``: the product endpoints
   ``POST /api/queue/next/`` and ``POST /api/leases/<id>/judgement/``; ``baseline``:
   ``bench/queue_baseline.py``, the simplest correct queue, at ``/bench/baseline/...``), resets the
   queue state (no leases, no judgements, every pair open), then runs K simulated annotators
   (threads in ``--client-procs`` processes, http.client with token auth) each looping
   next → judge for ``--warmup`` + ``--duration`` seconds; only the last ``--duration`` seconds
   are measured;
5. after each run checks the database for violations (must be 0): a pair handed to more than k
   annotators (live or judged leases, or judgements), a pair handed twice to one annotator (two
   leases or two judgements), plus consistency checks (``judgement_count`` and status against
   the rows, leases outside the annotator's expertise);
6. prints a table and a JSON summary, and writes docs/benchmarks/queue.md (not with ``--quick``
   unless ``--doc`` is given).

Run it from the repository root::

    .venv/bin/python bench/queue_load.py            # the full benchmark (a few minutes)
    .venv/bin/python bench/queue_load.py --quick    # a smoke run at a small size

Benchmarks are commands, not timed tests: every figure is reported next to the baseline measured
in the same run on the same machine, since absolute numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.* imports from the repository root
    sys.path.insert(0, str(REPO))
DEFAULT_DB = "scit2i_bench_queue"
DEFAULT_DOC = REPO / "docs" / "benchmarks" / "queue.md"
N_ANNOTATORS_MAX = 32
K_OVERLAP = 3
DISCIPLINES = ("physics", "chemistry", "biology")
IMPLS = {
    "ours": ("/api/queue/next/", "/api/leases/{}/judgement/"),
    "baseline": ("/bench/baseline/queue/next/", "/bench/baseline/leases/{}/judgement/"),
}
GOALS = {"judgements_per_s_at_32": 100.0, "next_p95_ms_at_8": 50.0}
LABEL_STUDIO = {"judgements_per_s_at_32": 10.7, "next_p95_ms_at_8": 458.0, "next_ms_at_1": 78.0}
SECRET = "bench-only-secret-key-not-for-production-0123456789-abcdefghijklmnop"


# --- Options --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None,
                   help="pair counts, comma-separated (default 20000,100000; --quick: 600)")
    p.add_argument("--k", dest="ks", default=None,
                   help="annotator counts K, comma-separated (default 1,8,32; --quick: 1,8)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per run (default 15; --quick: 3)")
    p.add_argument("--warmup", type=float, default=None,
                   help="unmeasured seconds before each run (default 2; --quick: 1)")
    p.add_argument("--impl", default="ours,baseline", help="implementations to run: ours,baseline")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2, one per core "
                   "here; at least 2)")
    p.add_argument("--threads", type=int, default=4,
                   help="threads per gunicorn worker: more than 1 = gthread workers with keep-alive (default 4); "
                        "1 = sync workers (gunicorn's default class: one request at a time, no keep-alive)")
    p.add_argument("--client-procs", type=int, default=0, help="client processes (default: one per 16 annotators)")
    p.add_argument("--conn-max-age", type=int, default=60,
                   help="DATABASE_CONN_MAX_AGE for the server (persistent connections; default 60)")
    p.add_argument("--database-url", default=None, help="PostgreSQL server URL (the database name is replaced)")
    p.add_argument("--db-name", default=DEFAULT_DB,
                   help=f"the dedicated database, emptied by every run: its name must contain 'bench' or start "
                        f"with 'test_' (default {DEFAULT_DB})")
    p.add_argument("--quick", action="store_true", help="a smoke run at a small size; does not write the doc")
    p.add_argument("--doc", default=None, help=f"markdown file to write (default {DEFAULT_DOC.relative_to(REPO)})")
    p.add_argument("--no-doc", action="store_true", help="do not write the markdown file")
    p.add_argument("--json", dest="json_out", default=None, help="also write the JSON summary to this file")
    p.add_argument("--inject-violation", action="store_true",
                   help="(for the harness's own test) after each run insert one over-k pair and one pair leased "
                        "twice to an annotator, and check again: the checker must report exactly those")
    args = p.parse_args(argv)
    args.sizes = _ints(args.sizes or ("600" if args.quick else "20000,100000"))
    args.ks = _ints(args.ks or ("1,8" if args.quick else "1,8,32"))
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 15.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.impls = [name.strip() for name in args.impl.split(",") if name.strip()]
    unknown = set(args.impls) - set(IMPLS)
    if unknown:
        p.error(f"unknown --impl {', '.join(sorted(unknown))}; use {', '.join(IMPLS)}")
    if args.workers < 2:
        p.error("--workers must be at least 2 (a production server)")
    if "bench" not in args.db_name and not args.db_name.startswith("test_"):
        p.error(f"refusing to empty {args.db_name!r}: the bench database's name must contain 'bench' "
                "(or start with 'test_')")
    if max(args.ks) > N_ANNOTATORS_MAX:
        p.error(f"K is at most {N_ANNOTATORS_MAX}")
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


def server_env(db_url: str, conn_max_age: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.queue_settings",
        DATABASE_URL=db_url,
        DATABASE_CONN_MAX_AGE=str(conn_max_age),
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    return env


def setup_django(db_url: str, conn_max_age: int) -> None:
    os.environ.update(server_env(db_url, conn_max_age))
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


def seed(n_pairs: int) -> float:
    """Replace every tuple, image and pair with ``n_pairs`` fresh open pairs (COPY); seconds taken."""
    from django.db import connection

    from annotation.models import Image, Pair, PromptTuple, Task, normalise_prompt

    started = time.perf_counter()
    tables = [*_reset_tables(), _table(Pair), _table(Image), _table(PromptTuple)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    tasks = list(Task.objects.order_by("id").values_list("id", flat=True))
    now = dt.datetime.now(dt.timezone.utc)
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
                copy.write_row((i, prompt, normalise_prompt(prompt), f"A rusty nail {i}.", f"A shiny nail {i}.",
                                tasks[i % len(tasks)], "nail", "simple", "bench", "{}", "[]", "[]", "[]", "", "",
                                now, now))
        with cur.copy(
            f"COPY {_table(Image)} (id, file, sha256, width, height, format, size_bytes, kind, tuple_id, "
            "generator, seed, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, 2 * n_pairs + 1):
                copy.write_row((i, f"images/bench/{i}.png", f"{i:064x}", 16, 16, "PNG", 100,
                                "explicit" if i % 2 else "superficial", (i + 1) // 2, "", None, now))
        with cur.copy(
            f"COPY {_table(Pair)} (id, tuple_id, image_correct_id, image_wrong_id, status, k, is_gold, "
            "judgement_count, priority, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, n_pairs + 1):
                copy.write_row((i, i, 2 * i - 1, 2 * i, "open", K_OVERLAP, False, 0, 0.0, now))
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
        cursor.execute(f"UPDATE {_table(Pair)} SET judgement_count = 0, status = 'open' "
                       "WHERE judgement_count <> 0 OR status <> 'open'")
        # Fresh statistics for the pairs. The emptied tables are deliberately *not* analysed: a
        # table analysed while empty keeps "0 rows" statistics until autovacuum catches up, and
        # plans for an empty table are not the plans a platform in use runs; a truncated,
        # never-analysed table is estimated from its current size instead, as it grows.
        cursor.execute(f"VACUUM ANALYZE {_table(Pair)}")


def ensure_annotators(n: int) -> list[dict]:
    """``n`` annotators with tokens: annotator 0 knows every discipline, the others one each in turn."""
    from rest_framework.authtoken.models import Token

    from annotation.services import people

    out = []
    for i in range(n):
        disciplines = list(DISCIPLINES) if i == 0 else [DISCIPLINES[(i - 1) % len(DISCIPLINES)]]
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
        Lease.objects.create(pair=fresh, annotator=user, left_image_id=fresh.image_correct_id,
                             right_image_id=fresh.image_wrong_id, state=Lease.State.JUDGED, expires_at=now,
                             ended_at=now)
    judged = Lease.objects.filter(state=Lease.State.JUDGED).exclude(pair=fresh).order_by("id").first()
    Lease.objects.create(pair_id=judged.pair_id, annotator_id=judged.annotator_id, left_image_id=judged.left_image_id,
                         right_image_id=judged.right_image_id, state=Lease.State.EXPIRED, expires_at=now, ended_at=now)


# --- The server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db_url: str, workers: int, conn_max_age: int, log_path: Path, threads: int = 1):
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                    "--workers", str(workers), "--chdir", str(REPO), "--pythonpath", str(REPO), "--timeout", "120",
                    "--log-level", "warning", "--preload"]  # import the app once, then fork the workers
        # sync workers (gunicorn's default, one request at a time, no keep-alive), or gthread
        # workers with keep-alive when threads > 1
        self.cmd += (["--worker-class", "sync"] if threads <= 1
                     else ["--worker-class", "gthread", "--threads", str(threads)])
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=server_env(db_url, conn_max_age), cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("POST", IMPLS["ours"][0])
                status = conn.getresponse().status
                conn.close()
                if status in (401, 403):
                    # every worker imports the app lazily: warm them up
                    for _ in range(20):
                        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                        c.request("POST", IMPLS["ours"][0])
                        c.getresponse().read()
                        c.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _busy_ticks() -> int:
    """CPU ticks the whole machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def server_pids(server: "Server") -> dict[str, list[int]]:
    """The gunicorn workers ("web") and the PostgreSQL backends connected to the bench database ("db")."""
    from django.db import connection

    web = []
    try:
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        web = [int(pid) for pid in children]
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        db = [row[0] for row in cursor.fetchall()]
    return {"web": web, "db": db}


def cpu_snapshot(server: "Server") -> dict[int, int]:
    return {pid: _cpu_ticks(pid) for pids in server_pids(server).values() for pid in pids}


def cpu_seconds_since(server: "Server", before: dict[int, int]) -> dict[str, float]:
    """CPU seconds the web workers and the database backends used since ``before``; processes
    that started meanwhile count from zero."""
    tick = os.sysconf("SC_CLK_TCK")
    return {side: sum(max(0, _cpu_ticks(pid) - before.get(pid, 0)) for pid in pids) / tick
            for side, pids in server_pids(server).items()}


# --- The simulated annotators --------------------------------------------------------------


CHOICES = ("left", "right", "both", "neither")


def _annotator(port, token, impl, start_at, stop_at, seed, out, lock):
    """One annotator: next → judge until ``stop_at``. Appends (call, started, seconds, status,
    queries, db_ms) rows; wall-clock times so that processes share one timeline."""
    next_path, judge_path = IMPLS[impl]
    rng = random.Random(seed)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    rows = []

    def call(kind, path, body):
        started_wall, started = time.time(), time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            rows.append((kind, started_wall, time.perf_counter() - started, f"error:{type(exc).__name__}", 0, 0.0))
            return None, b""
        seconds = time.perf_counter() - started
        rows.append((kind, started_wall, seconds, resp.status, int(resp.getheader("X-Bench-Queries", "0")),
                     float(resp.getheader("X-Bench-DB-Ms", "0"))))
        return resp.status, data

    while time.time() < start_at:
        time.sleep(min(0.05, max(0.0, start_at - time.time())))
    exhausted = False
    while time.time() < stop_at:
        status, data = call("next", next_path, b"")
        if status == 204:
            exhausted = True
            break
        if status != 200:
            time.sleep(0.01)
            continue
        lease_id = json.loads(data)["lease_id"]
        body = json.dumps({"choice": rng.choice(CHOICES), "time_spent_ms": rng.randint(500, 9000)}).encode()
        call("judge", judge_path.format(lease_id), body)
    conn.close()
    with lock:
        out.append({"rows": rows, "exhausted": exhausted})


def _client_process(port, tokens, impl, start_at, stop_at, seed, queue):
    out, lock = [], threading.Lock()
    threads = [threading.Thread(target=_annotator, daemon=True,
                                args=(port, tok, impl, start_at, stop_at, seed * 1000 + i, out, lock))
               for i, tok in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, stop_at - time.time()) + 180)
    with lock:
        queue.put({"annotators": list(out), "cpu_s": time.process_time()})


def run_load(server: "Server", annotators: list[dict], impl: str, *, warmup: float, duration: float, procs: int,
             seed: int) -> dict:
    port = server.port
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    n_procs = max(1, min(len(annotators), procs or (len(annotators) + 15) // 16))
    start_at = time.time() + 1.0  # time for the client processes to start
    measure_from, stop_at = start_at + warmup, start_at + warmup + duration
    tokens = [a["token"] for a in annotators]
    chunks = [tokens[i::n_procs] for i in range(n_procs)]
    processes = [ctx.Process(target=_client_process, args=(port, chunk, impl, start_at, stop_at, seed + i, queue))
                 for i, chunk in enumerate(chunks)]
    load_before = os.getloadavg()[0]
    for p in processes:
        p.start()
    # Server CPU over the measured window only (workers warm up, and copy-on-write pages of the
    # preloaded app fault in, during the warm-up).
    # The machine's busy time in the same window, less ours (server and clients), says how busy
    # other work kept the machine: the "other CPU" column.
    time.sleep(max(0.0, measure_from - time.time()))
    cpu_before, busy_before = cpu_snapshot(server), _busy_ticks()
    clients_before = sum(_cpu_ticks(p.pid) for p in processes)
    time.sleep(max(0.0, stop_at - time.time()))
    server_cpu = cpu_seconds_since(server, cpu_before)
    busy = (_busy_ticks() - busy_before) / os.sysconf("SC_CLK_TCK")
    clients = (sum(_cpu_ticks(p.pid) for p in processes) - clients_before) / os.sysconf("SC_CLK_TCK")
    other_cores = max(0.0, busy - server_cpu["web"] - server_cpu["db"] - clients) / duration
    results, client_cpu = [], 0.0
    for _ in processes:
        got = queue.get(timeout=stop_at - time.time() + 240)
        results.extend(got["annotators"])
        client_cpu += got["cpu_s"]
    for p in processes:
        p.join(timeout=30)
    out = summarise(results, measure_from, stop_at, duration, load_before)
    judged_all = sum(1 for r in results for row in r["rows"] if row[0] == "judge" and row[3] == 201)
    per = (lambda seconds, n: round(1000 * seconds / n, 2) if n else None)
    out["server_cpu_ms_per_judgement"] = per(server_cpu["web"] + server_cpu["db"], out["judgements"])
    out["web_cpu_ms_per_judgement"] = per(server_cpu["web"], out["judgements"])
    out["db_cpu_ms_per_judgement"] = per(server_cpu["db"], out["judgements"])
    out["client_cpu_ms_per_judgement"] = per(client_cpu, judged_all)  # whole run: the clients' own clock
    out["other_cpu_cores"] = round(other_cores, 2)
    cost = (out["server_cpu_ms_per_judgement"] or 0) + (out["client_cpu_ms_per_judgement"] or 0)
    # The most this machine's cores could serve at this CPU cost per judgement, if nothing else ran.
    out["cpu_bound_judgements_per_s"] = round(os.cpu_count() * 1000 / cost, 1) if cost else None
    out["ours_cpu_cores"] = round((server_cpu["web"] + server_cpu["db"] + clients) / duration, 2)
    return out


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-q / 100 * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(results: list[dict], measure_from: float, stop_at: float, duration: float, load_before: float) -> dict:
    calls = {"next": [], "judge": []}
    judged = errors = 0
    statuses: dict[str, dict[str, int]] = {"next": {}, "judge": {}}
    for result in results:
        for kind, started, seconds, status, queries, db_ms in result["rows"]:
            ended = started + seconds
            if kind == "judge" and status == 201 and measure_from <= ended <= stop_at:
                judged += 1
            if not (measure_from <= started < stop_at):
                continue
            calls[kind].append((seconds * 1000, queries, db_ms))
            statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + 1
            if not (isinstance(status, int) and status < 300):
                errors += 1
    out = {"judgements": judged, "judgements_per_s": round(judged / duration, 2), "errors": errors,
           "exhausted_annotators": sum(r["exhausted"] for r in results), "load_before": round(load_before, 2),
           "load_after": round(os.getloadavg()[0], 2)}
    for kind, rows in calls.items():
        ms = sorted(r[0] for r in rows)
        out[kind] = {
            "n": len(rows),
            "p50_ms": _round(percentile(ms, 50)),
            "p95_ms": _round(percentile(ms, 95)),
            "p99_ms": _round(percentile(ms, 99)),
            "queries_per_request": round(sum(r[1] for r in rows) / len(rows), 2) if rows else None,
            "db_ms_per_request": _round(sum(r[2] for r in rows) / len(rows)) if rows else None,
            "statuses": statuses[kind],
        }
    return out


def _round(value):
    return None if value is None else round(value, 2)


# --- Report --------------------------------------------------------------------------------


def machine() -> dict:
    from bench.host import cpu_model

    cpu = cpu_model() or "unknown"
    pg = None
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg = cursor.fetchone()[0]
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "postgresql": pg,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def ratios(results: list[dict]) -> list[dict]:
    """Ours against the baseline of the same run, per size and K: throughput ours ÷ baseline;
    latency and server CPU per judgement baseline ÷ ours (so above 1 is better everywhere)."""
    out = []
    by_key = {(r["pairs"], r["K"], r["impl"]): r for r in results}
    for (pairs, k, impl), ours in sorted(by_key.items()):
        base = by_key.get((pairs, k, "baseline"))
        if impl != "ours" or base is None:
            continue
        row = {"pairs": pairs, "K": k}
        if base["judgements_per_s"]:
            row["throughput_x"] = round(ours["judgements_per_s"] / base["judgements_per_s"], 2)
        for kind in ("next", "judge"):
            if ours[kind]["p95_ms"] and base[kind]["p95_ms"]:
                row[f"{kind}_p95_speedup_x"] = round(base[kind]["p95_ms"] / ours[kind]["p95_ms"], 2)
        if ours.get("server_cpu_ms_per_judgement") and base.get("server_cpu_ms_per_judgement"):
            row["server_cpu_x"] = round(base["server_cpu_ms_per_judgement"] / ours["server_cpu_ms_per_judgement"], 2)
        out.append(row)
    return out


def goals(results: list[dict]) -> dict:
    out = {}
    for r in results:
        if r["impl"] != "ours":
            continue
        if r["K"] == 32:
            out[f"judgements_per_s_at_32_{r['pairs']}"] = {
                "value": r["judgements_per_s"], "goal": f">= {GOALS['judgements_per_s_at_32']}",
                "met": r["judgements_per_s"] >= GOALS["judgements_per_s_at_32"],
                "other_cpu_cores": r.get("other_cpu_cores"),
                "cpu_bound_judgements_per_s": r.get("cpu_bound_judgements_per_s")}
        if r["K"] == 8:
            p95 = r["next"]["p95_ms"]
            out[f"next_p95_ms_at_8_{r['pairs']}"] = {
                "value": p95, "goal": f"<= {GOALS['next_p95_ms_at_8']}",
                "met": p95 is not None and p95 <= GOALS["next_p95_ms_at_8"],
                "other_cpu_cores": r.get("other_cpu_cores")}
    return out


def table(results: list[dict]) -> str:
    head = ("| pairs | K | impl | judgements/s | next p50 / p95 / p99 ms | judge p50 / p95 / p99 ms "
            "| queries next / judge | server CPU ms per judgement (web + db) | violations (over k, twice) "
            "| errors | other CPU (cores) |")
    lines = [head, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        n, j = r["next"], r["judge"]
        v = r["violations"]
        lines.append(
            f"| {r['pairs']:,} | {r['K']} | {r['impl']} | {r['judgements_per_s']:.1f} "
            f"| {_fmt(n['p50_ms'])} / {_fmt(n['p95_ms'])} / {_fmt(n['p99_ms'])} "
            f"| {_fmt(j['p50_ms'])} / {_fmt(j['p95_ms'])} / {_fmt(j['p99_ms'])} "
            f"| {_fmt(n['queries_per_request'])} / {_fmt(j['queries_per_request'])} "
            f"| {_fmt(r.get('web_cpu_ms_per_judgement'))} + {_fmt(r.get('db_cpu_ms_per_judgement'))} "
            f"| {v['over_k']}, {v['twice_to_one_annotator']} | {r['errors']} | {_fmt(r.get('other_cpu_cores'), 2)} |")
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    lines = ["| pairs | K | throughput ours ÷ baseline | next p95 baseline ÷ ours | judge p95 baseline ÷ ours "
             "| server CPU per judgement baseline ÷ ours |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pairs']:,} | {r['K']} | {_fmt(r.get('throughput_x'), 2)}× "
                     f"| {_fmt(r.get('next_p95_speedup_x'), 2)}× | {_fmt(r.get('judge_p95_speedup_x'), 2)}× "
                     f"| {_fmt(r.get('server_cpu_x'), 2)}× |")
    return "\n".join(lines)


def _server_words(config: dict) -> str:
    if config["threads"] > 1:
        return (f"gunicorn, {config['workers']} worker processes × {config['threads']} threads (gthread, "
                "keep-alive)")
    return f"gunicorn, {config['workers']} sync workers (no keep-alive)"


def write_doc(path: Path, summary: dict) -> None:
    m, config = summary["machine"], summary["config"]
    def goal_line(name, g):
        line = f"- `{name}`: {g['value']} (goal {g['goal']}): **{'met' if g['met'] else 'not met'}**"
        line += f"; other work used {_fmt(g.get('other_cpu_cores'), 2)} of the {m['nproc']} cores meanwhile"
        if g.get("cpu_bound_judgements_per_s"):
            line += (f"; at the CPU this run spent per judgement (server and client), {m['nproc']} idle cores "
                     f"would serve at most {g['cpu_bound_judgements_per_s']} judgements/s")
        return line

    goal_lines = "\n".join(goal_line(name, g) for name, g in summary["goals"].items())
    text = f"""# Queue under load

Written by `bench/queue_load.py` (rerun the command rather than editing this file). Every figure comes from
one run of the command on one machine: **compare ours with the baseline of the same run**, not absolute
numbers across runs or machines (these machines are shared: the last column says how many of the
{m['nproc']} cores other work kept busy during each run — 0 is a quiet machine).

**Reproduce:** `{summary['command']}`

- Date: {summary['date']}
- Machine: {m['nproc']} CPUs ({m['cpu']}); Python {m['python']}; PostgreSQL {m['postgresql']}; load average
  at start {m['loadavg_at_start']}.
- Server: {_server_words(config)}, production settings (`DJANGO_DEBUG=false`,
  `DATABASE_CONN_MAX_AGE={config['conn_max_age']}`) plus `bench/queue_settings.py` (a server-side
  statement counter and the baseline's URLs); PostgreSQL, client and server on the same machine, over
  loopback. A dedicated database (`{config['database']}`) is created, migrated and seeded (COPY: one
  prompt tuple and two placeholder image rows per pair, k = {K_OVERLAP}, spread over the 16 tasks) by the
  command.
- Load: K simulated annotators (threads in client processes, http.client, token auth) each looping
  `POST /api/queue/next/` → `POST /api/leases/<id>/judgement/` (a random choice) for {config['warmup']} s
  of warm-up and {config['duration']} s measured. Annotator 0 knows every discipline, the others one each in
  turn (physics, chemistry, biology), so every pair has eligible annotators and annotators of a field
  compete for the same pairs. The queue is reset (no leases or judgements, every pair open) before every
  run; `GOLD_RATE` is the default, with no gold pairs seeded.
- Baseline (`bench/queue_baseline.py`, mounted only by the bench server): the simplest correct queue — one
  `SELECT … FOR UPDATE` over the annotator's whole candidate set, then the first pair with room; its
  judgement does the same checks and writes as ours (audit event, consensus).

## Results

Latency: measured by the client (request sent → response read; waiting for a free server thread
included). Queries: counted on the server per request (every statement Django sends, authentication and
savepoints included). Judgements/s: 201 answers within the measured window. Server CPU per judgement:
CPU time of the gunicorn workers ("web") and of the PostgreSQL backends ("db") during the measured window,
divided by the judgements in it — one `next` and one `judgement` each; it moves much less with other
load on the machine than the timings do, and {m['nproc']} × 1000 ms ÷ (web + db + client CPU) bounds
the judgements/s this machine can serve. Violations, read from the database after each run: a pair over k
(more live or judged leases, or judgements, than k) and a pair handed twice to one annotator (two leases
or two judgements); both must be 0 (the JSON summary also has consistency checks: counters against rows,
leases outside expertise).

{table(summary['results'])}

Ours against the baseline of the same run (above 1 is better everywhere):

{ratio_table(summary['ratios'])}

Goals (ours, this machine): at least {GOALS['judgements_per_s_at_32']:.0f} judgements/s at K = 32 and a
`next` p95 of at most {GOALS['next_p95_ms_at_8']:.0f} ms at K = 8, with 20,000 pairs and no worse with 100,000:

{goal_lines}

Reference, not rerun here: Label Studio on this machine with the same next → submit loop on PostgreSQL
under uWSGI with 4 workers: {LABEL_STUDIO['judgements_per_s_at_32']} judgements/s at K = 32, `next` p95
{LABEL_STUDIO['next_p95_ms_at_8']:.0f} ms at K = 8, {LABEL_STUDIO['next_ms_at_1']:.0f} ms per `next` with one
annotator.

## What the design buys

The baseline locks an annotator's whole candidate set on every `next`, so annotators of one field queue
behind each other and its cost grows with the number of pairs. Ours (`annotation/services/queue.py`, see
its docstring) locks a window of {config['queue_lock_window']} candidates with `SKIP LOCKED` taken from the head of the
`(status, -priority, id)` index, so concurrent annotators spread over different pairs and a `next` costs
the same with 20,000 or 100,000 pairs; it runs a fixed number of statements (the annotator's state, the
window, the capacity re-check, the insert; the token and the annotator role in one more). A judgement
locks the pair and the lease, writes the judgement, the pair, the lease and its audit event, and brings
the consensus up to date from one read on the pair it already holds. Every one of these statements is
written once in SQL (`annotation/services/rows.py`, the queue, consensus), because building them through
the ORM cost more CPU than running them, and PostgreSQL prepares them per connection
(`DATABASE_PREPARED_STATEMENTS`, on here), because planning them cost more than running them too. The
baseline goes through the ORM, as the simplest implementation would.

## JSON summary

```json
{json.dumps(summary, indent=1)}
```
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- Main ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(["cd", shlex.quote(str(REPO)), "&&", ".venv/bin/python", "bench/queue_load.py",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    url = server_url(args)
    db_url = with_db(url, args.db_name)
    ensure_database(url, args.db_name)
    setup_django(db_url, args.conn_max_age)
    t0 = time.perf_counter()
    migrate()
    print(f"database {args.db_name} migrated in {time.perf_counter() - t0:.1f} s", flush=True)
    annotators = ensure_annotators(max(args.ks))
    info = machine()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-queue-gunicorn-{os.getpid()}.log"
    server = Server(db_url, args.workers, args.conn_max_age, log_path, threads=args.threads)
    results, injected = [], []
    try:
        server.wait_ready()
        for n_pairs in args.sizes:
            seconds = seed(n_pairs)
            print(f"seeded {n_pairs:,} pairs in {seconds:.1f} s", flush=True)
            for k in args.ks:
                for impl in args.impls:
                    from django.db import connection

                    reset_queue()
                    connection.close()
                    r = run_load(server, annotators[:k], impl, warmup=args.warmup, duration=args.duration,
                                 procs=args.client_procs, seed=n_pairs + k)
                    r.update(pairs=n_pairs, K=k, impl=impl, violations=check_violations())
                    if args.inject_violation:
                        inject_violations()
                        injected.append({"pairs": n_pairs, "K": k, "impl": impl, "violations": check_violations()})
                    results.append(r)
                    v = r["violations"]
                    n, j = r["next"], r["judge"]
                    print(f"{n_pairs:>7,} pairs K={k:<2} {impl:<8} {r['judgements_per_s']:7.1f} judgements/s  "
                          f"next p95 {_fmt(n['p95_ms'])} ms  judge p95 {_fmt(j['p95_ms'])} ms  "
                          f"queries {_fmt(n['queries_per_request'])}/{_fmt(j['queries_per_request'])}  "
                          f"violations {v['over_k']}/{v['twice_to_one_annotator']}  errors {r['errors']}  "
                          f"CPU web+db {_fmt(r['web_cpu_ms_per_judgement'])}+{_fmt(r['db_cpu_ms_per_judgement'])} "
                          f"ms/judgement  other CPU {r['other_cpu_cores']:.2f} cores", flush=True)
    finally:
        server.stop()
    from django.conf import settings as django_settings

    summary = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "config": {"sizes": args.sizes, "K": args.ks, "impls": args.impls, "duration": args.duration,
                   "warmup": args.warmup, "workers": args.workers, "threads": args.threads,
                   "conn_max_age": args.conn_max_age,
                   "k_overlap": K_OVERLAP, "database": args.db_name,
                   "queue_lock_window": django_settings.QUEUE_LOCK_WINDOW, "gold_rate": django_settings.GOLD_RATE},
        "results": results,
        "ratios": ratios(results),
        "goals": goals(results),
        "violations_total": sum(r["violations"]["over_k"] + r["violations"]["twice_to_one_annotator"]
                                for r in results),
    }
    if injected:
        summary["injected"] = injected
    print()
    print(table(results))
    print()
    print(ratio_table(summary["ratios"]))
    print()
    print(json.dumps(summary, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))
    if args.doc:
        write_doc(Path(args.doc), summary)
        print(f"\nwrote {args.doc}")
    return 1 if summary["violations_total"] else 0


if __name__ == "__main__":
    sys.exit(main())

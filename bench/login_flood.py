#!/usr/bin/env python
"""Login flood: does a flood of sign-in attempts slow annotators down? (issue 15, item 8)

What it does, in one command (see docs/benchmarks/login_flood.md for the figures it wrote last):

1. creates (if missing) and migrates a dedicated database (``scit2i_bench_login`` by default) on the
   PostgreSQL server of ``--database-url`` (default: ``$DATABASE_URL``'s server, else
   ``postgres://postgres@127.0.0.1:5432``), and one annotator with an API token;
2. serves the platform with gunicorn as in production (``config.settings`` with ``DJANGO_DEBUG`` unset,
   ``--workers`` 2 × ``--threads`` 4 gthread workers, ``DATABASE_CONN_MAX_AGE=60``, Django's default
   password hasher), twice: with the sign-in limiter (config/login_rate.py, its default limits) and
   without it (``LOGIN_RATE_LIMITING=false``);
3. on each server, one annotator (its own process) sends ``GET /api/me/`` with its token every
   ``--interval`` seconds (20 a second) for ``--duration`` seconds (15) and records each latency:
   first with no flood, then while ``--flood-threads`` threads (24, in ``--flood-procs`` processes, each
   thread with its keep-alive connection) post random usernames and passwords to ``POST /api/auth/token/``
   as fast as they are answered. With the limiter, twice: every flood thread from the annotator's
   address (127.0.0.1, the per-address limit), then each from its own loopback address (127.0.0.2…:
   only the overall limit holds them). The axes rows of the previous phase are removed between phases;
4. prints a table and a JSON summary (p50/p95/p99/max of the annotator's latency, the flood's attempts per
   second and their answers, the server's CPU seconds) and writes docs/benchmarks/login_flood.md (not with
   ``--quick`` unless ``--out`` is given).

Run it from the repository root::

    .venv/bin/python bench/login_flood.py            # about 2 minutes
    .venv/bin/python bench/login_flood.py --quick    # 3-second phases; prints only

Everything runs on one machine: the flood's client processes take CPU from the server too, as a flood from
the same host would. A benchmark is a command, not a timed test: tests/system/test_login_flood.py proves the
limiter's behaviour; this measures what it is worth.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.* imports from the repository root
    sys.path.insert(0, str(REPO))

DEFAULT_DB = "scit2i_bench_login"
DOC = REPO / "docs" / "benchmarks" / "login_flood.md"
SECRET = "bench-only-secret-key-not-for-production-0123456789-abcdefghijklmnop"
ANNOTATOR = "bench-login-annotator"
ME = "/api/me/"
TOKEN = "/api/auth/token/"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="a PostgreSQL URL whose server holds the bench database")
    p.add_argument("--db-name", default=DEFAULT_DB)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase (default 15)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between the annotator's requests")
    p.add_argument("--flood-threads", type=int, default=24)
    p.add_argument("--flood-procs", type=int, default=3, help="client processes the flood threads are spread over")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="3-second phases; prints only (unless --out)")
    p.add_argument("--out", help=f"the Markdown report (default {DOC.relative_to(REPO)}; none with --quick)")
    p.add_argument("--json-out", help="also write the JSON summary here")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3.0)
    if args.out is None and not args.quick:
        args.out = str(DOC)
    return args


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


def server_env(db_url: str, var_dir: Path, *, limiter: bool) -> dict[str, str]:
    """Production settings on plain HTTP over loopback; the limiter on (its defaults) or off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOGIN_RATE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=db_url,
        DATABASE_CONN_MAX_AGE="60",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_HSTS_SECONDS="0",
        SCIT2I_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        LOGIN_RATE_LIMITING="true" if limiter else "false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    )
    return env


def prepare(db_url: str, var_dir: Path) -> str:
    """Migrate, and return the token of the annotator (created once)."""
    os.environ.update(server_env(db_url, var_dir, limiter=True))
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from annotation.services import people

    call_command("migrate", verbosity=0, interactive=False)
    user, _ = people.ensure_user(ANNOTATOR, role="annotator", disciplines=["physics"])
    return Token.objects.get_or_create(user=user)[0].key


def forget_failures() -> None:
    """Remove the axes rows of earlier floods (each phase starts from the same table)."""
    from django.core.management import call_command
    from django.db import connection

    call_command("axes_reset", stdout=io.StringIO())  # it prints a line whatever the verbosity
    connection.close()


# --- The server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], args, log_path: Path):
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
            "--timeout",
            "120",
            "--log-level",
            "warning",
            "--preload",
        ]
        self.log = open(log_path, "wb")  # noqa: SIM115 - open while the server runs; closed by stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, token: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if get_me(self.port, token)[0] == 200:
                    for _ in range(20):  # every worker thread answers once before anything is timed
                        get_me(self.port, token)
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in time; see {self.log.name}")

    def cpu_seconds(self) -> float:
        import psutil

        try:
            master = psutil.Process(self.proc.pid)
            procs = [master, *master.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- The clients (their own processes: a client's GIL must not time the server) -------------


def get_me(port: int, token: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", ME, headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def annotator(port: int, token: str, duration: float, interval: float, results) -> None:
    """GET /api/me/ every ``interval`` seconds on one keep-alive connection, as a page that polls would."""
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()
    conn = None
    started = time.monotonic()
    tick = started
    while time.monotonic() - started < duration:
        begun = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", ME, headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append((time.perf_counter() - begun) * 1000)
        except (OSError, http.client.HTTPException):
            statuses["error"] += 1
            if conn is not None:
                conn.close()
            conn = None
        tick += interval
        pause = tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            tick = time.monotonic()  # a slow answer: the next request goes at once, no catching up
    if conn is not None:
        conn.close()
    results.put({"kind": "annotator", "latencies": latencies, "statuses": dict(statuses)})


def flood(port: int, threads: int, first_address: int | None, duration: float, seed: int, results) -> None:
    """``threads`` threads posting random usernames to the token endpoint until ``duration`` has passed.
    ``first_address``: thread i connects from 127.0.0.(first_address + i); None: all from 127.0.0.1."""
    counts: Counter[int | str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration

    def run(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        source = None if first_address is None else (f"127.0.0.{first_address + i}", 0)
        mine: Counter[int | str] = Counter()
        conn = None
        while time.monotonic() < deadline:
            body = json.dumps({"username": f"flood-{rng.getrandbits(64):016x}", "password": f"{rng.getrandbits(64):x}"})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=source)
                conn.request("POST", TOKEN, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                mine[response.status] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                mine["error"] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            counts.update(mine)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(
        {"kind": "flood", "counts": {str(k): v for k, v in counts.items()}, "seconds": time.monotonic() - started}
    )


# --- Phases ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def phase(server: Server, token: str, args, *, flood_from: str | None) -> dict:
    """One phase: the annotator alone (``flood_from`` None), or with the flood from ``"one"`` address or
    ``"many"`` (one per thread)."""
    forget_failures()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = []
    if flood_from:
        per_proc = [args.flood_threads // args.flood_procs] * args.flood_procs
        for i in range(args.flood_threads % args.flood_procs):
            per_proc[i] += 1
        first = 2
        for i, n in enumerate(per_proc):
            start = None if flood_from == "one" else first
            procs.append(ctx.Process(target=flood, args=(server.port, n, start, args.duration, i, results)))
            first += n
    me = ctx.Process(target=annotator, args=(server.port, token, args.duration, args.interval, results))
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    for proc in [*procs, me]:
        proc.start()
    collected = [results.get(timeout=args.duration + 180) for _ in range(len(procs) + 1)]
    for proc in [*procs, me]:
        proc.join()
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    mine = next(r for r in collected if r["kind"] == "annotator")
    floods = [r for r in collected if r["kind"] == "flood"]
    flood_counts: Counter[str] = Counter()
    for r in floods:
        flood_counts.update(r["counts"])
    flood_seconds = max((r["seconds"] for r in floods), default=elapsed)  # until the last answer came
    latencies = mine["latencies"]
    attempts = sum(flood_counts.values())
    return {
        "annotator": {
            "requests": len(latencies),
            "statuses": mine["statuses"],
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1) if latencies else None,
        },
        "flood": {
            "attempts": attempts,
            "seconds": round(flood_seconds, 1),
            "per_second": round(attempts / flood_seconds, 1),
            "answers": dict(sorted(flood_counts.items())),
            "refused": flood_counts.get("429", 0),
            "admitted_per_second": round((attempts - flood_counts.get("429", 0)) / flood_seconds, 2),
        }
        if flood_from
        else None,
        "seconds": round(elapsed, 1),
        "server_cpu_seconds": round(cpu, 1),
        "server_cores": round(cpu / elapsed, 2),
    }


SCENARIOS = [
    # (server, phase label, limiter on, flood_from)
    ("with limiter", "no flood", True, None),
    ("with limiter", "flood from one address", True, "one"),
    ("with limiter", "flood from 24 addresses", True, "many"),
    ("without limiter", "no flood", False, None),
    ("without limiter", "flood from one address", False, "one"),
]


# --- Report ---------------------------------------------------------------------------------


def machine() -> dict:
    from django.db import connection

    from bench.host import cpu_model

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    connection.close()
    import django

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": pg,
    }


def table(results: list[dict]) -> str:
    lines = [
        (
            "| server | phase | `GET /api/me/` p50 ms | p95 ms | p99 ms | max ms | annotator requests "
            "| flood attempts/s | refused (429) | admitted/s | server CPU (cores) |"
        ),
        "|" + "---|" * 11,
    ]
    for r in results:
        a, f = r["annotator"], r["flood"]
        flood_cells = (
            f"{f['per_second']:.0f} | {f['refused']:,} of {f['attempts']:,} | {f['admitted_per_second']:.1f}"
            if f
            else "– | – | –"
        )
        lines.append(
            f"| {r['server']} | {r['phase']} | {a['p50_ms']} | {a['p95_ms']} | {a['p99_ms']} | {a['max_ms']} "
            f"| {a['requests']} | {flood_cells} | {r['server_cores']:.2f} |"
        )
    return "\n".join(lines)


NOTES = """## Reading the figures

- Without the limiter every attempt runs Django's password hasher (PBKDF2, about 0.2 s of CPU, for an
  unknown username too) and writes an axes row: the flood is slow (a few attempts a second), but each one
  holds a gunicorn thread, and the annotator's request waits behind them in the queue. Its requests are sent
  one after the other, so it gets few answers in the phase: few samples (p95 and p99 are then its slowest).
- With the limiter, the attempts over a limit are answered 429 in the middleware, before the session, the
  authentication or axes (no hash, no query): the flood runs hundreds of times faster, nearly all of it
  refused, and only the admitted attempts ("admitted/s") hash. What the annotator still pays for is the
  HTTP flood itself: the server parses and answers every refused request and the flood's client processes
  share the machine. Stopping that earlier takes a limit in the reverse proxy (nginx `limit_req` on the
  sign-in URLs, say), outside the application.
- The limits are per worker process (2 here): the admitted rate of a flood is at most twice the configured
  one.
"""


def markdown(report: dict) -> str:
    m, args = report["machine"], report["args"]
    limits = report["limits"]
    return f"""# Login flood benchmark

Does a flood of sign-in attempts slow annotators down (issue 15, item 8)? One annotator polls
`GET /api/me/` with its token while {args["flood_threads"]} threads post random usernames to
`POST /api/auth/token/`, against gunicorn with the production settings, with the sign-in limiter
(config/login_rate.py) and without it, in the same run. Generated by `bench/login_flood.py`; do not edit by
hand.

- **Reproduce:** `{report["command"]}` (from the repository root; PostgreSQL on 127.0.0.1:5432)
- **Date:** {report["date"]}
- **Machine:** {m["nproc"]} CPUs, {m["cpu"]}; {m["platform"]}; Python {m["python"]}, Django {m["django"]},
  PostgreSQL {m["postgresql"]}
- **Load average** (1 min) at start / end: {report["load"][0]:.2f} / {report["load"][1]:.2f}
- **Server:** gunicorn, {args["workers"]} workers × {args["threads"]} threads (gthread, keep-alive), production
  settings (`DJANGO_DEBUG` unset, Django's PBKDF2 hasher, `DATABASE_CONN_MAX_AGE=60`); the limiter with its
  defaults: {limits["per_address"]} attempts a minute per address, {limits["overall"]} a minute overall (at most
  {limits["overall_burst"]:.0f} at once) and one being checked at a time, per worker process; "without
  limiter" is `LOGIN_RATE_LIMITING=false`.
- **Load:** each phase {args["duration"]:.0f} s; the annotator sends `GET /api/me/` every
  {args["interval"] * 1000:.0f} ms on a keep-alive connection (its own process); the flood:
  {args["flood_threads"]} threads in {args["flood_procs"]} processes, each posting as soon as it has its
  answer, from 127.0.0.1 ("one address") or each thread from its own loopback address ("24 addresses": only
  the overall limit holds them). The clients run on the same machine as the server and take CPU from it,
  as a flood from the same host would. Server CPU: the gunicorn processes' CPU seconds over the phase, per
  second of the phase.

## Results

{report["table"]}

{NOTES}

## Raw figures

```json
{json.dumps(report["results"], indent=1)}
```
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    url = server_url(args)
    ensure_database(url, args.db_name)
    db_url = with_db(url, args.db_name)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-login-"))
    try:
        token = prepare(db_url, var_dir)
        from django.conf import settings

        from config import login_rate

        limits = {
            "per_address": settings.LOGIN_RATE_PER_ADDRESS,
            "overall": settings.LOGIN_RATE_OVERALL,
            "overall_burst": max(1.0, settings.LOGIN_RATE_OVERALL * login_rate.OVERALL_BURST_SHARE),
        }
        results = []
        for server_name in dict.fromkeys(s for s, *_ in SCENARIOS):
            limiter = next(on for s, _, on, _ in SCENARIOS if s == server_name)
            log_path = var_dir / f"gunicorn-{'on' if limiter else 'off'}.log"
            server = Server(server_env(db_url, var_dir, limiter=limiter), args, log_path)
            try:
                server.wait_ready(token)
                for s, label, _, flood_from in SCENARIOS:
                    if s != server_name:
                        continue
                    log(f"{server_name}: {label} ({args.duration:.0f} s)")
                    result = {
                        "server": server_name,
                        "phase": label,
                        **phase(server, token, args, flood_from=flood_from),
                    }
                    log(f"  {json.dumps(result)}")
                    results.append(result)
            finally:
                server.stop()
        report = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([".venv/bin/python", "bench/login_flood.py", *argv]),
            "machine": machine(),
            "load": [load_start, os.getloadavg()[0]],
            "args": {
                k: getattr(args, k)
                for k in ("duration", "interval", "flood_threads", "flood_procs", "workers", "threads")
            },
            "limits": limits,
            "results": results,
        }
        report["table"] = table(results)
        print(report["table"])
        print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=1))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(markdown(report))
            log(f"wrote {args.out}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=1))
        bad = [r for r in results if set(r["annotator"]["statuses"]) - {200, "200"}]
        return 1 if bad else 0
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

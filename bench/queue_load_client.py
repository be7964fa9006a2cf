"""The simulated annotators of the queue benchmark (``bench/queue_load.py``) and what one run measures.

Each annotator does what the annotate page does for every pair, over one keep-alive connection with
token auth: ``POST next`` → ``GET`` the left image → ``GET`` the right image (the URLs of the lease's
payload) → ``POST heartbeat`` (one per pair) → ``POST judgement`` (a random choice). Every request is
recorded with its kind (``next``, ``image``, ``heartbeat``, ``judge``), its wall-clock start, its
latency, its status and the server's statement count. An image counts as an error unless it answers
200 with an image content type and exactly the bytes its ``Content-Disposition`` names (the file name
is the content's sha256): an error then shows as the status ``bad-body``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import os
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

KINDS = ("next", "image", "heartbeat", "judge")
CHOICES = ("left", "right", "both", "neither")


# --- The simulated annotators --------------------------------------------------------------


def image_ok(resp: http.client.HTTPResponse, data: bytes) -> bool:
    """A 200 answer carries the stored image: an image type, and bytes that hash to the file name."""
    disposition = resp.getheader("Content-Disposition", "")
    name = disposition.partition('filename="')[2].partition('"')[0]
    return (
        (resp.getheader("Content-Type") or "").startswith("image/")
        and bool(data)
        and hashlib.sha256(data).hexdigest() == name.partition(".")[0]
    )


def _annotator(port, token, paths, start_at, stop_at, seed, out, lock):
    """One annotator: next → both images → heartbeat → judge until ``stop_at``. Appends (kind,
    started, seconds, status, queries, db_ms) rows; wall-clock times so that processes share one
    timeline."""
    rng = random.Random(seed)
    get_headers = {"Authorization": f"Token {token}"}
    post_headers = {**get_headers, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    rows = []

    def call(kind, method, path, body=None):
        started_wall, started = time.time(), time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=post_headers if method == "POST" else get_headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # the next request opens a new connection
            rows.append((kind, started_wall, time.perf_counter() - started, f"error:{type(exc).__name__}", 0, 0.0))
            return None, b""
        seconds = time.perf_counter() - started
        status = resp.status
        if kind == "image" and status == 200 and not image_ok(resp, data):
            status = "bad-body"
        rows.append(
            (
                kind,
                started_wall,
                seconds,
                status,
                int(resp.getheader("X-Bench-Queries", "0")),
                float(resp.getheader("X-Bench-DB-Ms", "0")),
            )
        )
        return status, data

    while time.time() < start_at:
        time.sleep(min(0.05, max(0.0, start_at - time.time())))
    exhausted = False
    while time.time() < stop_at:
        status, data = call("next", "POST", paths["next"], b"")
        if status == 204:
            exhausted = True
            break
        if status != 200:
            time.sleep(0.01)
            continue
        lease = json.loads(data)
        lease_id = lease["lease_id"]
        for side in ("left_image_url", "right_image_url"):
            call("image", "GET", urlsplit(lease[side]).path)
        call("heartbeat", "POST", paths["heartbeat"].format(lease_id), b"")
        body = json.dumps({"choice": rng.choice(CHOICES), "time_spent_ms": rng.randint(500, 9000)}).encode()
        call("judge", "POST", paths["judge"].format(lease_id), body)
    conn.close()
    with lock:
        out.append({"rows": rows, "exhausted": exhausted})


def _client_process(port, tokens, paths, start_at, stop_at, seed, queue):
    out, lock = [], threading.Lock()
    threads = [
        threading.Thread(
            target=_annotator, daemon=True, args=(port, tok, paths, start_at, stop_at, seed * 1000 + i, out, lock)
        )
        for i, tok in enumerate(tokens)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, stop_at - time.time()) + 180)
    with lock:
        queue.put({"annotators": list(out), "cpu_s": time.process_time()})


# --- CPU accounting ------------------------------------------------------------------------


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


def server_pids(server) -> dict[str, list[int]]:
    """The measured server's gunicorn workers ("web") and the PostgreSQL backends connected to the
    bench database ("db": those of every bench server; an idle one's backends cost nothing)."""
    from django.db import connection

    web = []
    try:
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        web = [int(pid) for pid in children]
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        db = [row[0] for row in cursor.fetchall()]
    return {"web": web, "db": db}


def cpu_snapshot(server) -> dict[int, int]:
    return {pid: _cpu_ticks(pid) for pids in server_pids(server).values() for pid in pids}


def cpu_seconds_since(server, before: dict[int, int]) -> dict[str, float]:
    """CPU seconds the web workers and the database backends used since ``before``; processes
    that started meanwhile count from zero."""
    tick = os.sysconf("SC_CLK_TCK")
    return {
        side: sum(max(0, _cpu_ticks(pid) - before.get(pid, 0)) for pid in pids) / tick
        for side, pids in server_pids(server).items()
    }


# --- One run -------------------------------------------------------------------------------


def run_load(
    server, annotators: list[dict], paths: dict[str, str], *, warmup: float, duration: float, procs: int, seed: int
) -> dict:
    """K = len(annotators) annotators against ``server`` (its ``port``, its ``proc``) through
    ``paths`` (``next``, ``heartbeat``, ``judge``; ``{}`` for the lease id) for ``warmup`` +
    ``duration`` seconds; the figures of the last ``duration`` seconds."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    n_procs = max(1, min(len(annotators), procs or (len(annotators) + 15) // 16))
    start_at = time.time() + 1.0  # time for the client processes to start
    measure_from, stop_at = start_at + warmup, start_at + warmup + duration
    tokens = [a["token"] for a in annotators]
    chunks = [tokens[i::n_procs] for i in range(n_procs)]
    processes = [
        ctx.Process(target=_client_process, args=(server.port, chunk, paths, start_at, stop_at, seed + i, queue))
        for i, chunk in enumerate(chunks)
    ]
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

    def per(seconds, n):
        return round(1000 * seconds / n, 2) if n else None

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
    """Judgements/s (201 answers that ended in the window) and, per request kind, the requests that
    started in the window: latency percentiles, statements, statuses and errors (any status but
    2xx, a transport error, an image with the wrong bytes)."""
    calls: dict[str, list] = {kind: [] for kind in KINDS}
    statuses: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    errors = dict.fromkeys(KINDS, 0)
    judged = 0
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
                errors[kind] += 1
    out = {
        "judgements": judged,
        "judgements_per_s": round(judged / duration, 2),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "exhausted_annotators": sum(r["exhausted"] for r in results),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
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

"""What the queue benchmark (``bench/queue_load.py``) reports: figures over repeats, ratios, the
before-vs-after verdicts, the tables and docs/benchmarks/queue.md."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from bench.queue_load_client import KINDS

GOALS = {"judgements_per_s_at_32": 100.0, "next_p95_ms_at_8": 50.0}
LABEL_STUDIO = {"judgements_per_s_at_32": 10.7, "next_p95_ms_at_8": 458.0, "next_ms_at_1": 78.0}
# Before vs after: (name, K, where in a run, higher is better, guarded). The two figures issue 14
# guards against a regression, then one that moves much less with other load on the machine.
COMPARED = (
    ("judgements/s at K = 32", 32, ("judgements_per_s",), True, True),
    ("next p95 ms at K = 8", 8, ("next", "p95_ms"), False, True),
    ("server CPU ms per judgement at K = 32", 32, ("server_cpu_ms_per_judgement",), False, False),
)


def machine() -> dict:
    from bench.host import cpu_model

    pg = None
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg = cursor.fetchone()[0]
    except Exception:  # informational only
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model() or "unknown",
        "python": platform.python_version(),
        "postgresql": pg,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- Figures over the repeats of one (size, K, implementation) ----------------------------


def stats(values) -> dict | None:
    """Mean, min, max and spread (max − min) of the values that are not None (None if none)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    lo, hi = min(values), max(values)
    return {
        "mean": round(sum(values) / len(values), 2),
        "min": lo,
        "max": hi,
        "spread": round(hi - lo, 2),
        "n": len(values),
    }


def _get(run: dict, path: tuple[str, ...]):
    for key in path:
        run = run.get(key) if isinstance(run, dict) else None
    return run


def aggregate(results: list[dict]) -> list[dict]:
    """One entry per (pairs, K, impl), in the order the runs came: every figure as ``stats``."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["pairs"], r["K"], r["impl"]), []).append(r)
    out = []
    for (pairs, k, impl), runs in groups.items():
        g = {
            "pairs": pairs,
            "K": k,
            "impl": impl,
            "runs": len(runs),
            "errors": sum(r["errors"] for r in runs),
            "errors_by_kind": {kind: sum(r["errors_by_kind"][kind] for r in runs) for kind in KINDS},
            "violations": {
                name: sum(r["violations"][name] for r in runs)
                for name in ("over_k", "twice_to_one_annotator", "counter_mismatch", "outside_expertise")
            },
        }
        for name in (
            "judgements_per_s",
            "server_cpu_ms_per_judgement",
            "web_cpu_ms_per_judgement",
            "db_cpu_ms_per_judgement",
            "client_cpu_ms_per_judgement",
            "cpu_bound_judgements_per_s",
            "other_cpu_cores",
        ):
            g[name] = stats(r.get(name) for r in runs)
        for kind in KINDS:
            g[kind] = {
                name: stats(r[kind][name] for r in runs)
                for name in ("n", "p50_ms", "p95_ms", "p99_ms", "queries_per_request")
            }
        out.append(g)
    return out


def _mean(s: dict | None):
    return None if s is None else s["mean"]


def _find(groups: list[dict], pairs: int, k: int, impl: str) -> dict | None:
    return next((g for g in groups if (g["pairs"], g["K"], g["impl"]) == (pairs, k, impl)), None)


def ratios(groups: list[dict]) -> list[dict]:
    """Each product implementation against the baseline of the same run (means), per size and K:
    throughput impl ÷ baseline; latency and server CPU per judgement baseline ÷ impl (so above 1 is
    better everywhere)."""
    out = []
    for g in groups:
        base = _find(groups, g["pairs"], g["K"], "baseline")
        if g["impl"] == "baseline" or base is None:
            continue
        row = {"pairs": g["pairs"], "K": g["K"], "impl": g["impl"]}
        ours_jps, base_jps = _mean(g["judgements_per_s"]), _mean(base["judgements_per_s"])
        if ours_jps is not None and base_jps:
            row["throughput_x"] = round(ours_jps / base_jps, 2)
        for kind in ("next", "judge"):
            ours_p95, base_p95 = _mean(g[kind]["p95_ms"]), _mean(base[kind]["p95_ms"])
            if ours_p95 and base_p95:
                row[f"{kind}_p95_speedup_x"] = round(base_p95 / ours_p95, 2)
        ours_cpu, base_cpu = _mean(g["server_cpu_ms_per_judgement"]), _mean(base["server_cpu_ms_per_judgement"])
        if ours_cpu and base_cpu:
            row["server_cpu_x"] = round(base_cpu / ours_cpu, 2)
        out.append(row)
    return out


def before_after(groups: list[dict]) -> list[dict]:
    """The figures issue 14 names, ``before`` against ``ours`` ("after"), per size: means, the
    difference, the spread (max − min over the repeats of each implementation; the larger one is the
    bar) and a verdict: within spread, better or worse."""
    out = []
    for before in groups:
        if before["impl"] != "before":
            continue
        after = _find(groups, before["pairs"], before["K"], "ours")
        for label, k, path, higher_is_better, guarded in COMPARED:
            if before["K"] != k or after is None:
                continue
            b, a = _get(before, path), _get(after, path)
            if b is None or a is None:
                continue
            diff = round(a["mean"] - b["mean"], 2)
            spread = max(b["spread"], a["spread"])
            if abs(diff) <= spread:
                verdict = "within spread"
            else:
                verdict = "better" if (diff > 0) == higher_is_better else "worse"
            out.append(
                {
                    "figure": label,
                    "pairs": before["pairs"],
                    "before": b["mean"],
                    "after": a["mean"],
                    "difference": diff,
                    "difference_pct": round(100 * diff / b["mean"], 1) if b["mean"] else None,
                    "spread_before": b["spread"],
                    "spread_after": a["spread"],
                    "spread": spread,
                    "runs": [b["n"], a["n"]],
                    "verdict": verdict,
                    "guarded": guarded,
                    "spread_measured": min(b["n"], a["n"]) > 1,
                }
            )
    return out


def goals(groups: list[dict]) -> dict:
    out = {}
    for g in groups:
        if g["impl"] != "ours":
            continue
        if g["K"] == 32 and g["judgements_per_s"]:
            value = g["judgements_per_s"]["mean"]
            out[f"judgements_per_s_at_32_{g['pairs']}"] = {
                "value": value,
                "goal": f">= {GOALS['judgements_per_s_at_32']}",
                "met": value >= GOALS["judgements_per_s_at_32"],
                "other_cpu_cores": _mean(g["other_cpu_cores"]),
                "cpu_bound_judgements_per_s": _mean(g["cpu_bound_judgements_per_s"]),
            }
        if g["K"] == 8:
            p95 = _mean(g["next"]["p95_ms"])
            out[f"next_p95_ms_at_8_{g['pairs']}"] = {
                "value": p95,
                "goal": f"<= {GOALS['next_p95_ms_at_8']}",
                "met": p95 is not None and p95 <= GOALS["next_p95_ms_at_8"],
                "other_cpu_cores": _mean(g["other_cpu_cores"]),
            }
    return out


# --- Tables --------------------------------------------------------------------------------


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_stats(s: dict | None, digits=1) -> str:
    """``mean (min–max)``, or the one value when the repeats agree or there was one run."""
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return _fmt(s["mean"], digits)
    return f"{_fmt(s['mean'], digits)} ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"


def run_line(r: dict) -> str:
    """One line of progress for one run."""
    v, n, j = r["violations"], r["next"], r["judge"]
    queries = "/".join(_fmt(r[kind]["queries_per_request"]) for kind in KINDS)
    errors = "/".join(str(r["errors_by_kind"][kind]) for kind in KINDS)
    return (
        f"{r['pairs']:>7,} pairs K={r['K']:<2} {r['impl']:<8} #{r['repeat']} {r['judgements_per_s']:7.1f} "
        f"judgements/s  next p95 {_fmt(n['p95_ms'])} ms  image p95 {_fmt(r['image']['p95_ms'])} ms  "
        f"heartbeat p95 {_fmt(r['heartbeat']['p95_ms'])} ms  judge p95 {_fmt(j['p95_ms'])} ms  "
        f"queries {queries}  violations {v['over_k']}/{v['twice_to_one_annotator']}  errors {errors}  "
        f"CPU web+db {_fmt(r['web_cpu_ms_per_judgement'])}+{_fmt(r['db_cpu_ms_per_judgement'])} ms/judgement  "
        f"other CPU {r['other_cpu_cores']:.2f} cores"
    )


def table(groups: list[dict]) -> str:
    head = (
        "| pairs | K | impl | runs | judgements/s | server CPU ms per judgement (web + db) "
        "| queries per request: next / image / heartbeat / judge | violations (over k, twice) "
        "| errors: next / image / heartbeat / judge | other CPU (cores) |"
    )
    lines = [head, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
        v = g["violations"]
        queries = " / ".join(_fmt(_mean(g[kind]["queries_per_request"])) for kind in KINDS)
        errors = " / ".join(str(g["errors_by_kind"][kind]) for kind in KINDS)
        lines.append(
            f"| {g['pairs']:,} | {g['K']} | {g['impl']} | {g['runs']} | {fmt_stats(g['judgements_per_s'])} "
            f"| {fmt_stats(g['web_cpu_ms_per_judgement'])} + {fmt_stats(g['db_cpu_ms_per_judgement'])} "
            f"| {queries} | {v['over_k']}, {v['twice_to_one_annotator']} | {errors} "
            f"| {fmt_stats(g['other_cpu_cores'], 2)} |"
        )
    return "\n".join(lines)


def latency_table(groups: list[dict]) -> str:
    lines = [
        "| pairs | K | impl | request | p50 ms | p95 ms | p99 ms | requests per run |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for g in groups:
        for kind in KINDS:
            s = g[kind]
            lines.append(
                f"| {g['pairs']:,} | {g['K']} | {g['impl']} | {kind} | {fmt_stats(s['p50_ms'])} "
                f"| {fmt_stats(s['p95_ms'])} | {fmt_stats(s['p99_ms'])} | {fmt_stats(s['n'], 0)} |"
            )
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    lines = [
        (
            "| pairs | K | impl | throughput impl ÷ baseline | next p95 baseline ÷ impl "
            "| judge p95 baseline ÷ impl | server CPU per judgement baseline ÷ impl |"
        ),
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pairs']:,} | {r['K']} | {r['impl']} | {_fmt(r.get('throughput_x'), 2)}× "
            f"| {_fmt(r.get('next_p95_speedup_x'), 2)}× | {_fmt(r.get('judge_p95_speedup_x'), 2)}× "
            f"| {_fmt(r.get('server_cpu_x'), 2)}× |"
        )
    return "\n".join(lines)


def before_after_table(rows: list[dict]) -> str:
    lines = [
        "| figure | pairs | before | after (ours) | difference | spread: before / after (max − min) | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        pct = "" if r["difference_pct"] is None else f" ({r['difference_pct']:+.1f} %)"
        verdict = r["verdict"] if r["spread_measured"] else f"{r['verdict']} (one run each: no spread measured)"
        figure = r["figure"] if r.get("guarded", True) else f"{r['figure']} (not guarded)"
        lines.append(
            f"| {figure} | {r['pairs']:,} | {_fmt(r['before'])} | {_fmt(r['after'])} "
            f"| {r['difference']:+.1f}{pct} | {_fmt(r['spread_before'])} / {_fmt(r['spread_after'])} "
            f"| **{verdict}** |"
        )
    return "\n".join(lines)


def print_report(summary: dict) -> None:
    print()
    print(table(summary["aggregated"]))
    print()
    print(latency_table(summary["aggregated"]))
    if summary["ratios"]:
        print()
        print(ratio_table(summary["ratios"]))
    if summary["before_after"]:
        print()
        print(before_after_table(summary["before_after"]))


# --- The page ------------------------------------------------------------------------------


def _server_words(config: dict) -> str:
    if config["threads"] > 1:
        return f"gunicorn, {config['workers']} worker processes × {config['threads']} threads (gthread, keep-alive)"
    return f"gunicorn, {config['workers']} sync workers (no keep-alive)"


def _trees_words(trees: dict) -> str:
    before, ours = trees["before"], trees["ours"]
    text = (
        f"`before` is served from `{before['path']}` ({before['commit']}), `ours` from this checkout "
        f"({ours['commit']}). "
    )
    files, code = trees["differing"]["files"], trees["differing"]["code"]
    if not code:
        text += (
            "The two trees serve the same code (the syntax of every `.py` file of `annotation/`, `curation/`, "
            "`ml/` and `config/` is the same"
        )
        text += f"; {len(files)} differ in formatting or comments only)" if files else ")"
        return text + (
            ", so **every difference between `before` and `ours` below is run-to-run spread**: this "
            "run measures the spread itself."
        )
    listed = ", ".join(f"`{name}`" for name in code[:15]) + (" …" if len(code) > 15 else "")
    return text + (
        f"Python files of `annotation/`, `curation/`, `ml/` and `config/` that differ in code between "
        f"them: {len(code)} ({listed}); {len(files) - len(code)} more differ in formatting or comments "
        "only."
    )


def _before_after_section(summary: dict) -> str:
    if "trees" not in summary:
        return ""
    rows = summary["before_after"]
    body = before_after_table(rows) if rows else "(no run at K = 32 or K = 8 with both `before` and `ours`)"
    return f"""
## Before vs after

{_trees_words(summary["trees"])}

The two figures issue 14 guards, `before` against `ours` (after), means over the repeats, and the server
CPU per judgement (web + db), which other load on the machine moves much less than the timings. The
spread is max − min over the {summary["config"]["repeat"]} runs of the same implementation; the verdict compares the
difference with the larger of the two spreads: *within spread* when it is no larger, else *better* or
*worse*. Both servers run side by side against the same database, and the runs alternate (before, ours,
before, ours, …), so load from other work reaches both alike; the more of it (the "other CPU" column
below), the wider the spread and the less a verdict of *within spread* says.

{body}
"""


def write_doc(path: Path, summary: dict) -> None:
    m, config = summary["machine"], summary["config"]

    def goal_line(name, g):
        line = f"- `{name}`: {g['value']} (goal {g['goal']}): **{'met' if g['met'] else 'not met'}**"
        line += f"; other work used {_fmt(g.get('other_cpu_cores'), 2)} of the {m['nproc']} cores meanwhile"
        if g.get("cpu_bound_judgements_per_s"):
            line += (
                f"; at the CPU this run spent per judgement (server and client), {m['nproc']} idle cores "
                f"would serve at most {g['cpu_bound_judgements_per_s']} judgements/s"
            )
        return line

    goal_lines = "\n".join(goal_line(name, g) for name, g in summary["goals"].items()) or "(no run of ours)"
    impls = ", ".join(f"`{name}`" for name in config["impls"])
    baseline_words = ""
    if "baseline" in config["impls"]:
        baseline_words = """
- Baseline (`bench/queue_baseline.py`, mounted only by the bench server): the simplest correct queue — one
  `SELECT … FOR UPDATE` over the annotator's whole candidate set, then the first pair with room; its
  judgement does the same checks and writes as ours (audit event, consensus). Its annotators fetch the
  images and heartbeat through the product endpoints, as the page would."""
    before_words = ""
    if "trees" in summary:
        before_path = summary["trees"]["before"]["path"]
        before_words = (
            "\n- Before (`--before`): a second gunicorn, configured the same, serves the product "
            f"endpoints\n  from an older checkout (`{before_path}`) against the same database, with "
            "the bench settings\n  and middleware of this checkout; its runs are `before`, this "
            "checkout's are `ours`."
        )
    ratio_section = ""
    if summary["ratios"]:
        ratio_section = (
            "\nEach implementation against the baseline of the same run (means; above 1 is better "
            f"everywhere):\n\n{ratio_table(summary['ratios'])}\n"
        )
    text = f"""# Queue under load

Written by `bench/queue_load.py` (rerun the command rather than editing this file). Every figure comes from
one run of the command on one machine: **compare the implementations of the same run**, not absolute
numbers across runs or machines (these machines are shared: the "other CPU" column says how many of the
{m["nproc"]} cores other work kept busy during each run — 0 is a quiet machine).

**Reproduce:** `{summary["command"]}`

- Date: {summary["date"]}
- Machine: {m["nproc"]} CPUs ({m["cpu"]}); Python {m["python"]}; PostgreSQL {m["postgresql"]}; load average
  at start {m["loadavg_at_start"]}.
- Server: {_server_words(config)}, production settings (`DJANGO_DEBUG=false`,
  `DATABASE_CONN_MAX_AGE={config["conn_max_age"]}`) plus `bench/queue_settings.py` (a server-side
  statement counter and the baseline's URLs); PostgreSQL, client and server on the same machine, over
  loopback. A dedicated database (`{config["database"]}`) is created, migrated and seeded by the command
  (COPY: one prompt tuple, two images and one pair per pair, k = {config["k_overlap"]}, spread over the 16
  tasks). Every image is a real file in the storage (`MEDIA_ROOT` = `{config["media_root"]}` for every
  server): a distinct 32 × 32 PNG of about 3 KB, its row holding its true sha256, size, dimensions and
  format, written once and reused by later runs.
- Load: K simulated annotators (threads in client processes, http.client over one keep-alive connection
  each, token auth) each doing per pair what the annotate page does: `POST /api/queue/next/` → `GET` the
  left and the right image of the lease (the URLs of its payload: `/api/leases/<id>/image/<side>/`) →
  `POST /api/leases/<id>/heartbeat/` (one per pair) → `POST /api/leases/<id>/judgement/` (a random
  choice), for {config["warmup"]} s of warm-up and {config["duration"]} s measured. Every annotator may judge
  every discipline (physics, chemistry, biology), so all K compete for the head of the same queue. An image
  counts as an error unless it answers 200 with an image type and exactly the bytes of its sha256. The queue
  is reset (no leases or judgements, every pair open) before every run; `GOLD_RATE` is the default, with no
  gold pairs seeded. Implementations: {impls}; each (size, K, implementation) ran {config["repeat"]}
  time(s), the implementations alternating.{baseline_words}{before_words}
{_before_after_section(summary)}
## Results

Every figure is the mean over the repeats, with the min–max in brackets when they differ (the JSON
summary below has every run). Latency: measured by the client (request sent → response read; waiting for
a free server thread included). Queries: counted on the server per request (every statement Django
sends, authentication and savepoints included). Judgements/s: 201 answers within the measured window.
Server CPU per judgement: CPU time of the measured server's gunicorn workers ("web") and of the
PostgreSQL backends ("db") during the measured window, divided by the judgements in it — one `next`, two
images, one heartbeat and one judgement each; it moves much less with other load on the machine than the
timings do, and {m["nproc"]} × 1000 ms ÷ (web + db + client CPU) bounds the judgements/s this machine can
serve. Errors: answers other than 2xx (or an image with the wrong bytes), summed over the repeats.
Violations, read from the database after each run and summed over the repeats: a pair over k (more live
or judged leases, or judgements, than k) and a pair handed twice to one annotator (two leases or two
judgements); both must be 0 (the JSON summary also has consistency checks: counters against rows, leases
outside expertise).

{table(summary["aggregated"])}

Latency per request kind:

{latency_table(summary["aggregated"])}
{ratio_section}
Goals (ours, this machine): at least {GOALS["judgements_per_s_at_32"]:.0f} judgements/s at K = 32 and a
`next` p95 of at most {GOALS["next_p95_ms_at_8"]:.0f} ms at K = 8, with 20,000 pairs and no worse with 100,000 (set
when the load was next → judge alone; a judgement now takes five requests, two of them images):

{goal_lines}

Reference, not rerun here: Label Studio on this machine with a next → submit loop (no image fetches or
heartbeats) on PostgreSQL under uWSGI with 4 workers: {LABEL_STUDIO["judgements_per_s_at_32"]} judgements/s at
K = 32, `next` p95 {LABEL_STUDIO["next_p95_ms_at_8"]:.0f} ms at K = 8, {LABEL_STUDIO["next_ms_at_1"]:.0f} ms per
`next` with one annotator.

## What the design buys

The baseline locks an annotator's whole candidate set on every `next`, so annotators queue behind each
other and its cost grows with the number of pairs. Ours (`annotation/services/queue.py`, see its
docstring) locks a window of {config["queue_lock_window"]} candidates with `SKIP LOCKED` taken from the head of the
`(status, -priority, id)` index, so concurrent annotators spread over different pairs and a `next` costs
the same with 20,000 or 100,000 pairs; it runs a fixed number of statements. A judgement locks the pair
and the lease, writes the judgement, the pair, the lease and its audit event, and brings the consensus up
to date from one read on the pair it already holds. A heartbeat far from the lease's expiry is one
`UPDATE` and no pair lock; an image is one read of the lease and its two images, then the file. The hot
statements are literal SQL in one module (`annotation/services/queue_sql.py`; the consensus read in
`curation/services/consensus.py`), and PostgreSQL prepares every statement per connection
(`DATABASE_PREPARED_STATEMENTS`, on here: Django's `server_side_binding` and `prepare_threshold` options).
The baseline goes through the ORM, as the simplest implementation would.

## JSON summary

```json
{json.dumps({k: v for k, v in summary.items() if k != "aggregated"}, indent=1)}
```
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

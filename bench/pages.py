"""Page benchmark: server time and query count of the annotate page, the curation pages and the
dataset version builder at two sizes, in one run (issue "Performance", part "Pages").

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, as for the tests)::

    .venv/bin/python bench/pages.py            # N = 10,000 and 100,000 pairs; writes docs/benchmarks/pages.md
    .venv/bin/python bench/pages.py --quick    # N = 1,000 and 10,000, fewer repeats; prints only

What it does:

1. For each size N it creates (if missing) a dedicated database ``scit2i_bench_pages_<N>`` on the
   server of ``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432``), migrates it
   and seeds it once with :func:`bench.pages_seed.seed` (bulk inserts; a few minutes at 100,000
   pairs). A later run reuses the seeded database when its seed parameters match (``--reseed``
   forces a fresh one); migrations are always applied, so new indexes reach old databases.
2. It requests every page in-process with Django's test ``Client``, logged in as the role the
   page is for (the full middleware stack, session and template rendering; no network). Each page
   is requested ``--warmup`` times first, once more under ``CaptureQueriesContext`` to count its
   queries (that request is not timed: the capture adds overhead), then ``--reps`` timed times,
   the sizes interleaved over ``--rounds`` rounds so that a busy spell of the machine hits both.
   The figure is the median.
3. The login page (anonymous GET, no query) is the baseline: every page's time is also given as a
   multiple of the baseline measured in the same database and round, and the growth from the small
   to the large size is reported both raw and relative to the baseline, which cancels a machine
   that is uniformly slower or busier.

A page passes when its median at the largest size is at most ``--budget-ms`` (200) and it does not
grow with N: the same number of queries at both sizes, and a time growth (relative to the
baseline) of at most ``--growth-limit`` (1.5×) or of under 5 ms in absolute terms (timer noise on
pages that take a few milliseconds).

Prints a table and one JSON object; writes ``docs/benchmarks/pages.md`` (figures, machine, date
and this command) unless ``--quick`` is given without ``--out``; exits with 1 when a page in scope
fails. Not part of the test suite (tests/curation/test_bench_pages.py checks the verdict rule and what the
fixes must keep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_VERSION = 1  # bump when bench/pages_seed.py changes what it writes
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
DB_PREFIX = "scit2i_bench_pages"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
ABS_NOISE_MS = 5.0
DOC = ROOT / "docs" / "benchmarks" / "pages.md"

# (name, url or callable(context) -> url, role); role None = anonymous. "login" is the baseline.
# Role "worker": not a page but ("figures", name, params), the background refresh of cached figures.
PAGES = [
    ("login (baseline)", "/accounts/login/", None),
    ("annotate", "/annotate/", "annotator"),
    ("dashboard", "/curation/dashboard/", "admin"),
    ("dashboard ?discipline=physics", "/curation/dashboard/?discipline=physics", "admin"),
    ("agreement", "/curation/agreement/", "reviewer"),
    ("agreement ?task=GR", "/curation/agreement/?task=GR", "reviewer"),
    ("adjudication list", "/curation/adjudication/", "reviewer"),
    ("adjudication list ?task=GR&outcome=disputed", "/curation/adjudication/?task=GR&outcome=disputed", "reviewer"),
    ("adjudication item", lambda ctx: f"/curation/adjudication/{ctx['review_pair']}/", "reviewer"),
    ("audit log", "/curation/audit/", "admin"),
    ("audit log ?action=consensus.changed", "/curation/audit/?action=consensus.changed", "admin"),
    ("version builder", "/curation/versions/new/", "admin"),
    (
        "version builder preview (POST)",
        "POST /curation/versions/new/?preview=1&outcomes=confirmed&outcomes=reversed&outcomes=adjudicated&seed=0",
        "admin",
    ),
    ("home (annotator; not in scope)", "/", "annotator"),
    # What the dashboard and agreement pages no longer do per request: the refresh of their cached figures
    # (curation/services/figures.py), run by a worker at most once a FIGURES_MAX_AGE. Not page time.
    ("dashboard figures refresh (worker)", ("figures", "dashboard", {"discipline": None, "days": 14}), "worker"),
    (
        "agreement figures refresh (worker)",
        ("figures", "agreement", {"task": None, "discipline": None, "min_shared": 10}),
        "worker",
    ),
]
USERS = {"annotator": "ann-physics-1", "reviewer": "rev-1", "admin": "bench-admin"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 1 round of 3 repeats; prints only (unless --out)"
    )
    parser.add_argument("--sizes", help="comma-separated numbers of pairs (default 10000,100000)")
    parser.add_argument("--reps", type=int, help="timed requests per page, size and round (default 5)")
    parser.add_argument("--rounds", type=int, help="rounds over all sizes (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per page before timing")
    parser.add_argument("--reseed", action="store_true", help="drop and re-seed the benchmark databases")
    parser.add_argument("--only", help="comma-separated substrings: measure only matching pages (and the baseline)")
    parser.add_argument("--budget-ms", type=float, default=200.0)
    parser.add_argument("--growth-limit", type=float, default=1.5)
    parser.add_argument(
        "--out",
        help=f"write the Markdown report here (default {DOC.relative_to(ROOT)} for a full run, nothing with --quick)",
    )
    parser.add_argument("--json-out", help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    if args.sizes:
        args.sizes = tuple(sorted(int(n.replace("_", "")) for n in args.sizes.split(",")))
    else:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.reps = args.reps or (3 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.out is None and not args.quick:
        args.out = str(DOC)
    return args


# --- databases ---------------------------------------------------------------------------------


def server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER).rstrip("/")


def db_name(n: int) -> str:
    return f"{DB_PREFIX}_{n}"


def _admin_connection():
    import psycopg

    return psycopg.connect(f"{server_url()}/postgres", autocommit=True)


def create_database(name: str, *, drop: bool) -> bool:
    """Create the database if missing (dropping it first when asked); True if it was created."""
    with _admin_connection() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and drop:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
        return not exists


def setup_django(first_db: str) -> None:
    os.environ.setdefault("DJANGO_DEBUG", "true")  # the embedded defaults need no secrets
    os.environ["DATABASE_URL"] = f"{server_url()}/{first_db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def use_database(name: str) -> None:
    """Point Django's default connection at another benchmark database (reconnects lazily)."""
    from django.core.cache import caches
    from django.db import connections

    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = name
    caches["default"].key_prefix = name  # cached page figures of one database are not served for another


_META_TABLE = "CREATE TABLE IF NOT EXISTS bench_pages_meta (key text PRIMARY KEY, value text NOT NULL)"


def _meta_get() -> dict | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_META_TABLE)
        cursor.execute("SELECT value FROM bench_pages_meta WHERE key = 'seed'")
        row = cursor.fetchone()
    return json.loads(row[0]) if row else None


def _meta_set(value: dict) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_META_TABLE)
        cursor.execute(
            "INSERT INTO bench_pages_meta (key, value) VALUES ('seed', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [json.dumps(value)],
        )


def prepare(n: int, *, reseed: bool, log) -> dict:
    """A migrated database seeded with n pairs; returns the seed summary."""
    from django.core.management import call_command

    name = db_name(n)
    spec = {"n_pairs": n, "seed": 1, "seed_version": SEED_VERSION}
    use_database(name)
    if not create_database(name, drop=reseed):
        call_command("migrate", verbosity=0, interactive=False)
        meta = _meta_get()
        if meta and meta.get("spec") == spec:
            log(f"{name}: seeded already ({meta['summary']['judgements']} judgements)")
            return meta["summary"]
        log(f"{name}: seed missing or different; re-creating")
        use_database("postgres")
        create_database(name, drop=True)
        use_database(name)
    log(f"{name}: migrating")
    call_command("migrate", verbosity=0, interactive=False)
    from bench.pages_seed import seed

    log(f"{name}: seeding {n} pairs")
    started = time.perf_counter()
    summary = seed(n, seed=spec["seed"], log=log)
    summary["seed_seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name}: seeded in {summary['seed_seconds']} s: {summary}")
    _meta_set({"spec": spec, "summary": summary})
    return summary


# --- measuring ---------------------------------------------------------------------------------


def _clients() -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    clients = {None: Client(), "worker": None}
    for role, username in USERS.items():
        client = Client()
        client.force_login(get_user_model().objects.get(username=username))
        clients[role] = client
    return clients


def _context() -> dict:
    from curation.services.adjudication import review_queue

    first = review_queue().values_list("pair_id", flat=True).first()
    return {"review_pair": first}


def _get(client, url):
    """A page through the client, or (role "worker") a refresh of cached figures."""
    if isinstance(url, tuple):
        from curation.services.figures import compute

        _, name, params = url
        compute(name, params)
        return None
    if url.startswith("POST "):  # a form the page posts: the query string's fields as its body
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(url.removeprefix("POST "))
        return client.post(parts.path, parse_qs(parts.query))
    return client.get(url)


def _request(client, url) -> float:
    started = time.perf_counter()
    response = _get(client, url)
    if response is None:
        return (time.perf_counter() - started) * 1000
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed


def _queries(client, url: str) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    times = [(float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries]
    slowest = max(times, default=(0.0, ""))
    return {
        "queries": len(times),
        "db_ms": round(sum(t for t, _ in times), 2),
        "slowest_ms": round(slowest[0], 2),
        "slowest_sql": slowest[1][:300],
    }


SEEDS_HEADER = (
    "| pairs | judgements | consensus rows | gold pairs | disputed | reversed | adjudicated | leases | audit events "
    "| history (days) |"
)


def measure(args, pages, log) -> dict:
    state = {}
    samples = {(n, name): [] for n in args.sizes for name, _, _ in pages}
    for round_ in range(args.rounds):
        for n in args.sizes:
            use_database(db_name(n))
            if n not in state:
                state[n] = {"clients": _clients(), "context": _context(), "queries": {}}
            clients, context = state[n]["clients"], state[n]["context"]
            for name, url, role in pages:
                url = url(context) if callable(url) else url
                client = clients[role]
                if round_ == 0:
                    for _ in range(args.warmup):
                        _request(client, url)
                    state[n]["queries"][name] = _queries(client, url)
                for _ in range(args.reps):
                    samples[(n, name)].append(_request(client, url))
            log(f"round {round_ + 1}/{args.rounds}, N={n}: done")
    results = {}
    for name, url, role in pages:
        per_size = {}
        for n in args.sizes:
            times = samples[(n, name)]
            per_size[n] = {
                "median_ms": round(statistics.median(times), 2),
                "min_ms": round(min(times), 2),
                "max_ms": round(max(times), 2),
                "samples": len(times),
                **state[n]["queries"][name],
            }
        shown = url if isinstance(url, str) else f"{url[1]} figures" if isinstance(url, tuple) else None
        results[name] = {
            "url": shown or "(first pair of the review list)",
            "role": role or "anonymous",
            "sizes": per_size,
        }
    return results


def judge(results: dict, args) -> None:
    """Add ratios to the baseline, growth and a verdict to every page's results."""
    small, large = args.sizes[0], args.sizes[-1]
    base = results["login (baseline)"]["sizes"]
    for _name, result in results.items():
        sizes = result["sizes"]
        for n, row in sizes.items():
            row["x_baseline"] = round(row["median_ms"] / base[n]["median_ms"], 2)
        growth = sizes[large]["median_ms"] / sizes[small]["median_ms"]
        growth_vs_base = sizes[large]["x_baseline"] / sizes[small]["x_baseline"]
        grows_time = (
            growth_vs_base > args.growth_limit and sizes[large]["median_ms"] - sizes[small]["median_ms"] > ABS_NOISE_MS
        )
        grows_queries = sizes[large]["queries"] != sizes[small]["queries"]
        over = sizes[large]["median_ms"] > args.budget_ms
        result["growth"] = round(growth, 2)
        result["growth_vs_baseline"] = round(growth_vs_base, 2)
        if result.get("role") == "worker":
            result["verdict"] = "background, not page time"
            continue
        result["verdict"] = (
            "ok"
            if not (grows_time or grows_queries or over)
            else ", ".join(
                reason
                for reason, bad in (("over budget", over), ("time grows", grows_time), ("queries grow", grows_queries))
                if bad
            )
        )


# --- reporting ---------------------------------------------------------------------------------


def machine() -> dict:
    from django.db import connection

    from bench.host import cpu_model

    cpu = cpu_model()
    import django

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": pg,
    }


def _fmt_n(n: int) -> str:
    return f"{n:,}"


def table(results: dict, args) -> str:
    small, large = args.sizes[0], args.sizes[-1]
    head = (
        f"| page | N={_fmt_n(small)} ms | queries | × base | N={_fmt_n(large)} ms | queries | × base "
        f"| growth | growth vs base | verdict |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, result in results.items():
        a, b = result["sizes"][small], result["sizes"][large]
        lines.append(
            f"| {name} | {a['median_ms']:.1f} | {a['queries']} | {a['x_baseline']:.1f} | {b['median_ms']:.1f} "
            f"| {b['queries']} | {b['x_baseline']:.1f} | {result['growth']:.2f} | "
            f"{result['growth_vs_baseline']:.2f} | {result['verdict']} |"
        )
    return "\n".join(lines)


def command_line(argv) -> str:
    return " ".join([".venv/bin/python", "bench/pages.py", *argv])


NOTES = """## What the fixes changed

Figures stay identical (tests/curation/test_bench_pages.py compares every new query with the one it replaced).

- **Agreement** (page, API and the dashboard's agreement section): before, one query fetched every
  judgement in scope (ten columns, 276,000 rows at 100,000 pairs) and Python mapped each to a label.
  Now one query aggregates in the database: the pairs × labels count table with identical rows folded
  (a few hundred rows), the co-ratings per two annotators and label pair, and each annotator's labels
  against the consensus label; α and Fleiss' κ are computed from the folded table
  (`alpha_folded`, `fleiss_folded`, equal to the libraries on the unfolded table). The dashboard asks
  only for the α/κ part (`agreement_groups`, no Cohen self-join).
- **Dashboard**: the lease figures read only active leases and leases reclaimed in the last 24 h (new
  index `lease_state_ended`) instead of every lease; the throughput window uses the new index
  `judgement_created`.
- **Adjudication list**: the flagged count is a correlated subquery, so the database walks the queue
  in order through the new partial index `consensus_review_queue` and counts flags for the 50 rows of
  the page only; the paginator's count and the totals read the review rows, not the judgements.
- **Audit log**: the action and target-type menus come from a loose index scan (recursive CTE, one
  index probe per distinct value) instead of `SELECT DISTINCT` over the whole log; the new index
  `audit_action_id` serves the list filtered by action, newest first.
- **Agreement and dashboard pages** serve their figures from a shared cache (`curation/services/figures.py`):
  a page costs a cache read plus its small queries at any size; the figures (still exact: the aggregate
  queries above) are recomputed by one background task on the `default` queue once older than
  `FIGURES_MAX_AGE_SECONDS` (60), and the page prints when they were computed. The two "figures refresh
  (worker)" rows are what that task costs: they grow with N, and run at most once a minute per filter set,
  off the request. Alternative considered: tallies maintained per judgement under the pair lock, exact on
  every request, but a few shared tally rows updated by every judgement would serialise the queue's hot
  path (103 judgements/s at K = 32), for figures nobody reads per judgement.
- **Audit log**: counts at most 10,000 matching events (`SELECT COUNT(*) FROM (… LIMIT 10001)`, the
  `CappedPaginator` in `curation/paging.py`); beyond that it shows "Page 1 of 200+" and asks to narrow the
  filters.
- Indexes: `curation/migrations/0003_page_indexes.py` (plain `CREATE INDEX IF NOT EXISTS`, PostgreSQL
  and SQLite).

## What still grows with N, and why

- **Version builder preview** (133 ms at 100,000 pairs, within the 200 ms budget): its answer is the number of
  pairs the filters select, per split and label, so it counts them (one aggregate query).
- **Adjudication list filtered by task and outcome** (86 ms, within budget): the database walks the review
  queue (disputed and reversed pairs, which grow with the data) joining each row to its task to keep the
  task's; an index on the task would need the task copied onto the consensus row.
- **Home page** (annotator; measured for information, not part of this task): the "left for you"
  counts in `annotation/stats.py` scan the annotator's open pairs.
"""


def markdown(report: dict, argv) -> str:
    args = report["args"]
    m = report["machine"]
    seeds = "\n".join(
        f"| {_fmt_n(int(n))} | {s['judgements']:,} | {s['consensus']:,} | {s['gold']:,} | "
        f"{s['outcomes'].get('disputed', 0):,} | {s['outcomes'].get('reversed', 0):,} | "
        f"{s['adjudications']:,} | {s['leases']:,} | {s['audit_events']:,} | {s['history_days']} |"
        for n, s in report["seeded"].items()
    )
    return f"""# Page benchmark

Server time and query count of the annotate page, the curation pages (dashboard with its agreement,
quality and queue-health sections, agreement, adjudication list and item, audit log) and the dataset
version builder, at {" and ".join(_fmt_n(n) for n in args["sizes"])} pairs in the same run
(issue "Performance", part "Pages"). Generated by `bench/pages.py`; do not edit by hand.

- **Date:** {report["date"]}
- **Command:** `{report["command"]}` (from the repository root; PostgreSQL on 127.0.0.1:5432)
- **Machine:** {m["nproc"]} CPUs, {m["cpu"]}; {m["platform"]}; Python {m["python"]}, Django {m["django"]},
  PostgreSQL {m["postgresql"]}
- **Load average** (1 min) at start / end: {report["load"][0]:.2f} / {report["load"][1]:.2f}
- **Method:** in-process Django test `Client`, logged in as the page's role; {args["warmup"]} warm-up requests,
  then {args["rounds"]} round(s) × {args["reps"]} timed requests per page and size, sizes interleaved; median.
  Queries counted with `CaptureQueriesContext` on one extra, untimed request. "× base" is the page's median
  over the login page's median in the same database; "growth" is the time at {_fmt_n(args["sizes"][-1])} over
  the time at {_fmt_n(args["sizes"][0])}, raw and relative to the baseline.
- **Verdict:** ok when the median at {_fmt_n(args["sizes"][-1])} pairs is at most {args["budget_ms"]:.0f} ms, the
  query count is the same at both sizes, and the time does not grow by more than {args["growth_limit"]}× relative
  to the baseline (differences under {ABS_NOISE_MS:.0f} ms are timer noise).

## Results

{report["table"]}

## Seeded data

{SEEDS_HEADER}
|---|---|---|---|---|---|---|---|---|---|
{seeds}

Judgements arrive at a constant {report["judgements_per_day"]} a day up to the run, so the larger database has a
longer history (as a real one would) and the dashboard's 14-day window holds about the same number of
judgements at both sizes. Details of the data: `bench/pages_seed.py`.

{NOTES}
## Raw figures

```json
{json.dumps(report["results"], indent=1)}
```
"""


def keep_key_latency(doc: Path, text: str) -> str:
    """``text`` plus the section bench/annotate_keys.py wrote into ``doc`` (between its markers), if any."""
    from bench.annotate_keys import END, START

    old = doc.read_text() if doc.exists() else ""
    if START not in old or END not in old:
        return text
    section = START + old.split(START, 1)[1].split(END, 1)[0] + END + "\n"
    return text.rstrip("\n") + "\n\n" + section


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    setup_django("postgres")
    seeded = {}
    for n in args.sizes:
        seeded[str(n)] = prepare(n, reseed=args.reseed, log=log)
    pages = PAGES
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        pages = [p for p in PAGES if p[0] == "login (baseline)" or any(w in p[0] for w in wanted)]
    results = measure(args, pages, log)
    judge(results, args)
    from bench.pages_seed import JUDGEMENTS_PER_DAY

    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(argv),
        "machine": machine(),
        "load": [load_start, os.getloadavg()[0]],
        "args": {
            "sizes": list(args.sizes),
            "reps": args.reps,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "budget_ms": args.budget_ms,
            "growth_limit": args.growth_limit,
        },
        "seeded": seeded,
        "judgements_per_day": JUDGEMENTS_PER_DAY,
        "results": results,
    }
    report["table"] = table(results, args)
    print(report["table"])
    print(json.dumps({key: report[key] for key in report if key != "table"}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(keep_key_latency(Path(args.out), markdown(report, argv)))
        log(f"wrote {args.out}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    failing = [name for name, result in results.items() if result["verdict"] != "ok" and "not in scope" not in name]
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Per-key latency of the annotate page in a real Chromium: from a judgement key press to the next pair on screen.

What it does, in one command (the figures it wrote last are in docs/benchmarks/pages.md, "Annotate page: per-key
latency in the browser"):

1. for each tree (this checkout, ``ours``; with ``--before PATH`` also an older checkout, ``before``, e.g.
   ``git worktree add --detach /tmp/keys-before <rev>``; same virtualenv) creates a dedicated database
   (``scit2i_bench_keys_<tree>``), migrates it with that tree's own migrations and seeds it through that tree's
   own services (``bench/annotate_keys_seed.py``): ``--pairs`` chemistry pairs with real 384 × 384 PNG images, and
   one annotator per run;
2. serves each tree with gunicorn (2 gthread workers of 4 threads, production settings plus
   ``bench/annotate_keys_settings.py``: plain-HTTP cookies and static files from the source folders);
3. ``--repeat`` times, alternating the trees (before, ours, before, ours, …): a fresh Chromium signs in as a fresh
   annotator, opens /annotate/, and presses 1 or 2 (alternating) ``--presses`` times, each as soon as the pair is on
   screen. In the page, ``KEY_LATENCY_PROBE`` records the time from the key's ``keydown`` to the moment
   ``#annotate`` is ``data-state="ready"`` with another lease (both images loaded and shown);
4. prints, and writes into docs/benchmarks/pages.md between its markers (``--no-doc`` to skip), p50, p95 and
   mean per tree, each as the mean and min–max over the runs, and the verdict: ours is within before's when its
   p50 and p95 exceed before's by no more than the larger run-to-run spread measured in the same run.

Run it from the repository root::

    git worktree add --detach /tmp/keys-before <rev>
    .venv/bin/python bench/annotate_keys.py --before /tmp/keys-before --repeat 3

A benchmark, not a timed test: absolute figures move with the machine's load, so the trees are measured side by
side in one run. tests/system/test_browser_annotate.py uses the same probe and records what it saw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.* imports from the repository root
    sys.path.insert(0, str(REPO))

from bench import queue_load  # noqa: E402
from bench.host import cpu_model  # noqa: E402

DOC = REPO / "docs" / "benchmarks" / "pages.md"
START, END = "<!-- annotate-keys:start -->", "<!-- annotate-keys:end -->"
PASSWORD = "bench-keys-password-1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Installed before the page's own scripts (Playwright's add_init_script). Pushes one latency (ms) per judgement
# key to window.keyLatencies: keydown of 1-4 outside a text field -> #annotate ready with another lease id.
KEY_LATENCY_PROBE = """
(() => {
  window.keyLatencies = [];
  let pressedAt = null, fromLease = null;
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    const root = document.getElementById("annotate");
    if (!typing && root && ["1", "2", "3", "4"].includes(event.key) && root.dataset.state === "ready") {
      pressedAt = performance.now();
      fromLease = root.dataset.leaseId;
    }
  }, true);
  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("annotate");
    if (!root) return;
    new MutationObserver(() => {
      if (pressedAt === null) return;
      if (root.dataset.state === "ready" && root.dataset.leaseId !== fromLease) {
        window.keyLatencies.push(performance.now() - pressedAt);
        pressedAt = null;
      } else if (root.dataset.state === "empty" || root.dataset.state === "error") {
        pressedAt = null;
      }
    }).observe(root, {attributes: true, attributeFilter: ["data-state", "data-lease-id"]});
  });
})();
"""


def press_and_measure(page, presses: int) -> list[float]:
    """Press 1/2 ``presses`` times on an open annotate page, each once the pair is ready; the latencies (ms)."""
    for i in range(presses):
        page.wait_for_selector('#annotate[data-state="ready"]')
        page.keyboard.press("1" if i % 2 == 0 else "2")
        page.wait_for_function("n => window.keyLatencies.length >= n", arg=i + 1)
    return list(page.evaluate("window.keyLatencies"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "mean": statistics.fmean(latencies),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--before", type=Path, default=None, help="an older checkout to measure side by side")
    p.add_argument("--repeat", type=int, default=3, help="runs per tree, alternating (default 3)")
    p.add_argument("--presses", type=int, default=40, help="judgement keys per run (default 40)")
    p.add_argument("--pairs", type=int, default=160, help="pairs seeded per tree (default 160)")
    p.add_argument("--database-url", default=None, help="PostgreSQL server URL (the database name is replaced)")
    p.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(REPO)}")
    return p.parse_args(argv)


def prepare(tree: Path, name: str, db_url: str, media: Path, args) -> dict[str, str]:
    """Create, migrate and seed the tree's database; the environment its server runs with."""
    queue_load.ensure_database(queue_load.server_url(args), name)
    env = queue_load.server_env(db_url, 60, media, before=None if tree == REPO else tree)
    settings = "bench.annotate_keys_settings" if tree == REPO else "annotate_keys_settings"
    env.update(DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=os.pathsep.join([str(tree), str(REPO / "bench")]))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=tree, env=env, check=True)
    seed = [sys.executable, str(REPO / "bench" / "annotate_keys_seed.py"), str(args.pairs), str(args.repeat), PASSWORD]
    subprocess.run(seed, cwd=tree, env=env, check=True)
    return env


def run_once(url: str, annotator: str, presses: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=url, viewport={"width": 1366, "height": 768})
        context.set_default_timeout(30_000)
        context.add_init_script(KEY_LATENCY_PROBE)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", annotator)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.goto("/annotate/")
        latencies = press_and_measure(page, presses)
        browser.close()
    return latencies


def markdown(results: dict[str, list[dict]], args, argv, info: dict, trees: dict[str, str]) -> str:
    rows, spreads = [], {}
    for tree, runs in results.items():
        cells = []
        for key in ("p50", "p95", "mean"):
            values = [run[key] for run in runs]
            spreads[(tree, key)] = max(values) - min(values)
            cells.append(f"{statistics.fmean(values):.0f} ({min(values):.0f}–{max(values):.0f})")
        rows.append(f"| {tree} ({trees[tree]}) | {' | '.join(cells)} |")
    lines = [
        START,
        "## Annotate page: per-key latency in the browser",
        "",
        "From a judgement key's `keydown` to the next pair on screen (`#annotate` ready with another lease: both",
        "images loaded), in Chromium against gunicorn on PostgreSQL. Written by `bench/annotate_keys.py`; do not edit",
        "by hand (`bench/pages.py` keeps this section when it rewrites the page).",
        "",
        f"- **Date:** {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- **Command:** `{argv}`",
        (
            f"- **Machine:** {info['cpus']} CPUs, {info['cpu']}; load average (1 min) at start {info['load_start']}, "
            f"at end {os.getloadavg()[0]:.2f}"
        ),
        (
            f"- **Method:** {args.repeat} runs per tree, trees alternating; each run a fresh browser and annotator, "
            f"{args.presses} key presses (1 and 2 alternating), each as soon as the pair is shown; {args.pairs} pairs "
            "of 384 × 384 PNG images per tree. Each figure: mean over the runs (min–max)."
        ),
        "",
        "| tree | p50 ms | p95 ms | mean ms |",
        "|---|---|---|---|",
        *rows,
    ]
    if "before" in results:
        verdicts = []
        for key in ("p50", "p95"):
            before = statistics.fmean(r[key] for r in results["before"])
            ours = statistics.fmean(r[key] for r in results["ours"])
            spread = max(spreads[("before", key)], spreads[("ours", key)])
            ok = ours - before <= spread
            verdicts.append(
                f"{key}: {before:.0f} before, {ours:.0f} after ({ours - before:+.0f} ms; spread {spread:.0f}): "
                + ("within" if ok else "**slower than the spread**")
            )
        lines += ["", "**Verdict:** " + "; ".join(verdicts) + "."]
    lines += [END]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    shown = " ".join(["cd", shlex.quote(str(REPO)), "&&", ".venv/bin/python", "bench/annotate_keys.py"])
    shown += "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    info = {"cpus": os.cpu_count(), "cpu": cpu_model() or "unknown", "load_start": f"{os.getloadavg()[0]:.2f}"}
    trees = {"ours": REPO} | ({"before": args.before.resolve()} if args.before else {})
    described = {name: queue_load.describe_tree(tree)["commit"] for name, tree in trees.items()}
    servers, results = {}, {name: [] for name in trees}
    media = Path(tempfile.mkdtemp(prefix="bench-keys-media-"))
    try:
        for name, tree in trees.items():
            db = f"scit2i_bench_keys_{name}"
            env = prepare(tree, db, queue_load.with_db(queue_load.server_url(args), db), media / name, args)
            servers[name] = queue_load.Server(env, workers=2, log_path=media / f"{name}.log", threads=4, tree=tree)
        for server in servers.values():
            server.wait_ready()
        order = [n for n in ("before", "ours") if n in trees]
        for run in range(args.repeat):
            for name in order:
                latencies = run_once(f"http://127.0.0.1:{servers[name].port}", f"bench-keys-{run}", args.presses)
                results[name].append(summary(latencies))
                print(f"run {run + 1} {name}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in results[name][-1].items()))
    finally:
        for server in servers.values():
            server.stop()
    section = markdown(results, args, shown, info, described)
    print(section)
    if not args.no_doc:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

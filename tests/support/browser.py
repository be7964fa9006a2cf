"""Settings and helpers of the browser tests (Playwright's Chromium): its flags, the three widths issue 16 asks
every page to work at, signing in, accessibility checks with axe-core, and where screenshots go.

axe-core comes vendored inside the pinned ``axe-playwright-python`` package (its ``axe.min.js``): nothing is
fetched from a CDN while the tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from axe_playwright_python.sync_playwright import Axe
from django.db import connections
from playwright.sync_api import Page, sync_playwright

from tests.support.paths import REPO

ARTIFACTS = REPO / "test-artifacts"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Laptop, desktop and phone (issue 16): every page is checked and screenshotted at these.
WIDTHS = [(1366, 768), (1920, 1080), (390, 844)]
WIDTH_IDS = ["laptop", "desktop", "phone"]

# axe-core impacts that fail a test (minor and moderate findings are reported, not failed).
FAILING_IMPACTS = ("serious", "critical")


@contextmanager
def chromium_page(base_url: str, width: int = 1366, height: int = 768) -> Iterator[Page]:
    """A fresh Chromium page at ``width``×``height`` whose relative URLs go to ``base_url`` (the live server)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            browser.close()
            # Playwright's greenlet gives the test body its own database connection; close it, or the test
            # database cannot be dropped.
            connections.close_all()


def sign_in(page: Page, username: str, password: str) -> None:
    """Sign in through the login form, as a person would."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def accessibility_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now, each with the offending nodes."""
    response = Axe().run(page).response
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [node["target"] for node in v["nodes"]][:5],
        }
        for v in response["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]


def sideways_overflow(page: Page) -> int:
    """How many pixels the page is wider than its viewport (0 or less: it never scrolls sideways)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def screenshot(page: Page, name: str) -> None:
    """A full-page screenshot at test-artifacts/<name>.png, for checking by eye."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

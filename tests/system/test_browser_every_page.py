"""Every page of the platform in a real Chromium, as each role that may open it (issue 16: accessibility, keyboard,
the three widths).

The pages are the permission matrix's GET rows (tests/support/permission_matrix.py), API rows aside, that answer 200
with HTML to the annotator, the reviewer or the admin, in the matrix's world (tests/support/permission_world.py): a
page added to the matrix is checked here without another line. At 1366×768, 1920×1080 and a 390-px phone width,
each page:

* passes axe-core (vendored by the pinned axe-playwright-python) with no serious or critical violation;
* never scrolls sideways;
* at the laptop width, shows keyboard focus: the first Tab lands on the skip link, the next ones on the page's
  controls, each drawn with a visible outline.

Screenshots: test-artifacts/every-page/<role>-<page>-<width>.png. Failures are collected over all pages, so one
run lists every page to mend.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.support import permission_world
from tests.support.browser import (
    ARTIFACTS,
    WIDTH_IDS,
    WIDTHS,
    accessibility_violations,
    chromium_page,
    sideways_overflow,
    sign_in,
)
from tests.support.permission_matrix import CELLS, FORMAT_SUFFIX

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SIGNED_IN_ROLES = ("annotator", "reviewer", "admin")

# Where the focused element's outline is read: its own, or a ring drawn as a box-shadow.
FOCUS_STYLE = """() => {
    const el = document.activeElement, style = getComputedStyle(el);
    return {tag: el.tagName, text: (el.textContent || el.name || '').trim().slice(0, 40),
            outline: style.outlineStyle !== 'none' ? parseFloat(style.outlineWidth) : 0,
            shadow: style.boxShadow !== 'none'};
}"""


def pages_of(role: str) -> list[str]:
    """The (unformatted) paths of the GET page rows that answer 200 to ``role``."""
    return [
        cell.path
        for cell in CELLS
        if cell.method == "GET"
        and not cell.route.startswith(("api/", "admin/"))
        and not re.search(FORMAT_SUFFIX, cell.route)
        and cell.expected("anonymous") != "A"  # an API answer (DRF's browsable page), not one of ours
        and cell.expected(role) == "200"
    ]


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.split("?")[0].lower()).strip("-") or "home"


@pytest.mark.parametrize("width,height", WIDTHS, ids=WIDTH_IDS)
def test_every_page_is_accessible_fits_the_width_and_shows_keyboard_focus(
    live_server, settings, tmp_path, width, height
):
    world = permission_world.build(settings, tmp_path)
    out = ARTIFACTS / "every-page"
    out.mkdir(parents=True, exist_ok=True)
    problems, seen = [], 0
    for role in SIGNED_IN_ROLES:
        with chromium_page(live_server.url, width, height) as page:
            context = page.context
            sign_in(page, world["users"][role].username, world["PASSWORD"])
            for raw in pages_of(role):
                path = raw.format(**world)
                try:
                    response = page.goto(path)
                except PlaywrightError as error:
                    if "Download is starting" not in str(error):
                        raise
                    page.close()  # an export: a file, not a page; the aborted navigation stays with that tab
                    page = context.new_page()
                    continue
                if response is None or "text/html" not in response.headers.get("content-type", ""):
                    continue  # a download, an image or JSON: not a page
                seen += 1
                where = f"{role} {path} @{width}"
                if response.status != 200:
                    problems.append(f"{where}: HTTP {response.status}")
                    continue
                page.wait_for_load_state("networkidle")
                if found := accessibility_violations(page):
                    problems.append(f"{where}: axe {found}")
                if (wide := sideways_overflow(page)) > 0:
                    problems.append(f"{where}: {wide}px wider than the viewport")
                if width == 1366:
                    problems += [f"{where}: {p}" for p in focus_problems(page)]
                page.screenshot(path=str(out / f"{role}-{slug(raw)}-{width}.png"), full_page=True)
    assert seen >= 30, f"only {seen} pages were checked"
    assert not problems, "\n".join(problems)


def focus_problems(page) -> list[str]:
    """Tab from the top of the page: the skip link first, then up to four controls, each with a visible ring."""
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    found = []
    for step in range(5):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_STYLE)
        if step == 0 and focused["text"] != "Skip to content":
            found.append(f"the first Tab lands on {focused}, not the skip link")
        if focused["tag"] == "BODY":
            break
        if focused["outline"] < 2 and not focused["shadow"]:
            found.append(f"no visible focus on {focused}")
    return found

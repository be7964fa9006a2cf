"""The dataset version page in a real Chromium (issue 16: its metadata grid paired labels with the wrong
values — "Outcomes" above "none", "Minimum agreement" beside the outcome list — misstating what was frozen).

At 1366×768 and 1920×1080 every label sits on the row of its own value, to its left; at a 390-px phone width
each value sits under its label; the page never scrolls sideways. Screenshots of the three widths go to
test-artifacts/version-page-<width>.png.
"""

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from curation.services import versions
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.factories import make_user
from tests.support.judging import judged

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


@pytest.mark.parametrize("width,height", [(1366, 768), (1920, 1080), (390, 844)])
def test_every_label_of_a_version_sits_beside_or_above_its_own_value(live_server, width, height):
    admin = make_user("curator", "admin", password=PASSWORD)
    judged("expected", "expected", "expected")
    version = versions.build_version(admin, "v-layout", outcomes=["confirmed", "reversed"], min_agreement=0.5)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height}).new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", "curator")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"/curation/versions/{version.pk}/")
        boxes = page.eval_on_selector(
            "#version-meta",
            """dl => [...dl.querySelectorAll('dt')].map(dt => {
                const dd = dt.nextElementSibling, a = dt.getBoundingClientRect(), b = dd.getBoundingClientRect();
                return {label: dt.textContent, value: dd.textContent.trim(), dt: [a.left, a.top], dd: [b.left, b.top]};
            })""",
        )
        wide = page.evaluate("document.documentElement.scrollWidth") - width
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"version-page-{width}.png"), full_page=True)
        browser.close()
    connections.close_all()
    by_label = {box["label"]: box for box in boxes}
    assert by_label["Outcomes"]["value"] == "confirmed, reversed"
    assert by_label["Minimum agreement"]["value"] == "0.5"
    for box in boxes:
        (dt_x, dt_y), (dd_x, dd_y) = box["dt"], box["dd"]
        if width >= 1366:
            assert abs(dt_y - dd_y) < 4 and dt_x < dd_x, box  # the label on its value's row, to its left
        else:
            assert dd_y > dt_y and abs(dt_x - dd_x) < 4, box  # the value under its label
    assert wide <= 0, f"the page is {wide}px wider than the {width}-px viewport"

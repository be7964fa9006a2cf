"""The reviewer's and admin's home in a real Chromium (issue 16): an admin sees what waits, the headline
figures, runs, exports and imports, follows "disputed" to the filtered review list; no serious accessibility
finding and no sideways scrolling at 1366, 1920 and 390 px (test-artifacts/home-staff-<width>.png)."""

import pytest
from playwright.sync_api import expect

from tests.support.browser import (
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_user
from tests.support.judging import judged_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def test_an_admin_finds_their_work_on_the_home_page_and_opens_the_disputed_pairs(live_server):
    make_user("chief", "admin", password=PASSWORD)
    disputed = judged_pair("neither", "other", "both")
    judged_pair("other", "other", "expected")  # reversed

    layout = {}
    with chromium_page(live_server.url) as page:
        sign_in(page, "chief", PASSWORD)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.goto("/")
            expect(page.locator("#waiting-disputed")).to_have_text("1")
            layout[width] = (accessibility_violations(page), sideways_overflow(page))
            screenshot(page, f"home-staff-{width}")
        page.set_viewport_size({"width": 1366, "height": 768})
        expect(page.locator("#runs")).to_contain_text("No run is queued or running.")
        page.click("a.figure:has(#waiting-disputed)")
        expect(page.locator("#review-queue tbody tr")).to_have_count(1)
        rows = page.eval_on_selector_all("#review-queue tbody tr", "rows => rows.map(r => r.dataset.pair)")

    assert rows == [str(disputed.pk)]
    for width, (violations, overflow) in layout.items():
        assert violations == [], width
        assert overflow <= 0, f"{width}: {overflow}px wider than the viewport"

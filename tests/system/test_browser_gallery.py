"""The pair gallery in a real Chromium (issue 16): thumbnails at least 160 px wide, loaded lazily; filtering
by outcome leaves the one reversed pair, whose thumbnail opens its adjudication page; no serious accessibility
finding and no sideways scrolling at 1366, 1920 and 390 px (test-artifacts/gallery-<width>.png)."""

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
from tests.support.factories import make_pair, make_user
from tests.support.judging import judged_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def test_a_reviewer_filters_the_gallery_and_opens_a_pair(live_server):
    make_user("eye", "reviewer", password=PASSWORD)
    reversed_ = judged_pair("other", "other", "expected")
    for task in ("RU", "LR", "GR"):
        make_pair(task)

    layout, sizes = {}, {}
    with chromium_page(live_server.url) as page:
        sign_in(page, "eye", PASSWORD)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.goto("/curation/pairs/")
            expect(page.locator(".gallery-item")).to_have_count(4)
            sizes[width] = page.eval_on_selector_all(
                ".gallery-thumbs img", "imgs => imgs.map(i => [i.getBoundingClientRect().width, i.loading])"
            )
            layout[width] = (accessibility_violations(page), sideways_overflow(page))
            screenshot(page, f"gallery-{width}")
        page.set_viewport_size({"width": 1366, "height": 768})
        page.select_option("#id_outcome", "reversed")
        page.click(".gallery-filters button[type=submit]")
        expect(page.locator(".gallery-item")).to_have_count(1)
        page.click(f'.gallery-item[data-pair="{reversed_.pk}"] .gallery-thumbs')
        expect(page.locator("#pair-id")).to_have_text(str(reversed_.pk))

    for width, (violations, overflow) in layout.items():
        assert violations == [], width
        assert overflow <= 0, f"{width}: {overflow}px wider than the viewport"
        assert all(w >= 160 and loading == "lazy" for w, loading in sizes[width]), (width, sizes[width])

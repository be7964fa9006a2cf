"""The adjudication page in a real Chromium (issue 16, "Reviewers"): as fast as annotating.

One reviewer works through a filtered-free review list by keyboard: zoom (both images together), flicker and
swipe, a comment typed without the keys firing, key 1 records the decision and draws the next pair without a
page load, n says when nothing else waits, key 2 decides the last one. At 1366, 1920 and 390 px the page and the
review list have no serious accessibility finding and never scroll sideways (the list overflowed at 390 px);
screenshots go to test-artifacts/adjudication-<width>.png and adjudication-list-<width>.png.
"""

import pytest
from playwright.sync_api import expect

from curation.models import Adjudication
from tests.support.browser import (
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_user
from tests.support.judging import chemist, judge, judged_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def test_a_reviewer_decides_two_pairs_by_keyboard_without_a_page_load(live_server):
    make_user("judge", "reviewer", password=PASSWORD)
    first = judged_pair("other", "other")
    judge(chemist(), first, "expected", flag_image_broken=True, comment="The second image is cut off at the edge.")
    second = judged_pair("neither", "other", "both")

    layout = {}
    with chromium_page(live_server.url) as page:
        sign_in(page, "judge", PASSWORD)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.goto("/curation/adjudication/")
            layout[f"list-{width}"] = (accessibility_violations(page), sideways_overflow(page))
            screenshot(page, f"adjudication-list-{width}")
            page.goto(f"/curation/adjudication/{first.pk}/")
            expect(page.locator("#flags-comments")).to_contain_text("image broken ×1")
            layout[f"page-{width}"] = (accessibility_violations(page), sideways_overflow(page))
            screenshot(page, f"adjudication-{width}")

        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(f"/curation/adjudication/{first.pk}/")
        page.evaluate("window.__samePage = true")  # gone if anything reloads the page

        page.keyboard.press("+")
        page.keyboard.press("+")
        expect(page.locator("#zoom-level")).to_have_text("225 %")
        transforms = page.eval_on_selector_all(".adj-view img", "imgs => imgs.map(i => i.style.transform)")
        assert transforms[0] == transforms[1] and "scale(2.25)" in transforms[0]
        page.keyboard.press("0")
        expect(page.locator("#zoom-level")).to_have_text("100 %")

        page.keyboard.press("f")
        expect(page.locator("#compare")).to_have_attribute("data-mode", "flicker")
        expect(page.locator("#flicker-label")).to_have_text("Other")  # it alternates on its own
        page.keyboard.press("s")
        expect(page.locator("#swipe-control")).to_be_visible()
        page.fill("#swipe", "30")
        assert page.eval_on_selector("#image-other", "f => f.style.clipPath") == "inset(0px 0px 0px 30%)"
        page.keyboard.press("b")
        expect(page.locator("#compare")).to_have_attribute("data-mode", "side")

        page.click("#id_comment")
        page.keyboard.type("1 and 2 agree: rust.")  # keys typed into the comment decide nothing
        expect(page.locator("#pair-id")).to_have_text(str(first.pk))
        page.click("#pair-title")
        page.keyboard.press("1")
        expect(page.locator("#pair-id")).to_have_text(str(second.pk))
        expect(page.locator("#adj-status")).to_have_text(f"Pair {first.pk}: expected.")
        assert page.url.endswith(f"/curation/adjudication/{second.pk}/")
        expect(page.locator("#implicit-prompt")).to_have_text(second.tuple.implicit_prompt)
        expect(page.locator("#judgement-table td.label")).to_have_count(3)
        assert page.input_value("#id_comment") == ""

        page.keyboard.press("n")
        expect(page.locator("#adj-status")).to_have_text("No other pair waits in this list.")
        page.keyboard.press("2")
        expect(page.locator("#queue-done")).to_be_visible()
        page.keyboard.press("3")  # nothing left to decide: it says so and records nothing
        expect(page.locator("#adj-status")).to_have_text("Every pair of this list has been decided.")
        assert page.evaluate("window.__samePage === true")

    for name, (violations, overflow) in layout.items():
        assert violations == [], name
        assert overflow <= 0, f"{name}: {overflow}px wider than the viewport"
    decisions = {a.pair_id: (a.label, a.comment) for a in Adjudication.objects.all()}
    assert decisions == {first.pk: ("expected", "1 and 2 agree: rust."), second.pk: ("other", "")}

"""A qualification set in a real Chromium: an admin adds two gold pairs of Rust to the set on the guide page;
an annotator answers them by keyboard on the annotate page, passes, and is then served a normal pair.

The guide page's qualification section passes axe (no serious or critical finding) and never scrolls
sideways at 1366×768, 1920×1080 and 390×844; screenshots of it go to
test-artifacts/guide-qualification-<width>.png.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotation.models import Lease, Pair, Qualification
from curation.services import gold
from tests.support.browser import ARTIFACTS, WIDTHS, accessibility_violations, chromium_page, sideways_overflow, sign_in
from tests.support.factories import make_pair, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def _ready_lease(page, previous: str | None = None) -> Lease:
    annotate = page.locator("#annotate")
    if previous is not None:
        expect(annotate).not_to_have_attribute("data-lease-id", previous)
    expect(annotate).to_have_attribute("data-state", "ready")
    return Lease.objects.select_related("pair").get(pk=annotate.get_attribute("data-lease-id"))


def test_an_admin_builds_the_set_and_an_annotator_qualifies_by_keyboard(live_server, settings):
    settings.GOLD_RATE = 0.0
    admin = make_user("curator", "admin", password=PASSWORD)
    annotator = make_user("chemist", "annotator", disciplines=["chemistry"], password=PASSWORD)
    gold_pairs = [make_pair("RU") for _ in range(2)]
    for pair in gold_pairs:
        gold.mark_gold(admin, pair.id, "expected")
    normal = make_pair("RU")

    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto("/curation/guides/RU/")
        for pair in gold_pairs:
            page.get_by_role("button", name=f"Add pair {pair.id} to the set").click()
            expect(page.get_by_role("button", name=f"Remove pair {pair.id} from the set")).to_be_visible()
        expect(page.locator("#qualification-size")).to_have_text("2")
        expect(page.locator('#qualification-annotators tr[data-user="chemist"]')).to_contain_text(
            "pending · 0 of 2 answered"
        )
        assert set(Pair.objects.filter(is_qualification=True).values_list("id", flat=True)) == {
            p.id for p in gold_pairs
        }
        ARTIFACTS.mkdir(exist_ok=True)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.goto("/curation/guides/RU/#qualification")
            section = page.locator("#qualification")
            section.scroll_into_view_if_needed()
            assert accessibility_violations(page) == [], width
            assert sideways_overflow(page) <= 0, width
            section.screenshot(path=str(ARTIFACTS / f"guide-qualification-{width}.png"))

        page.set_viewport_size({"width": 1366, "height": 768})
        page.context.clear_cookies()
        sign_in(page, "chemist", PASSWORD)
        expect(page.locator("#qualification-status")).to_contain_text("Qualification for Rust: 0 of 2 answered")
        page.goto("/annotate/")
        previous = None
        for _ in range(2):
            lease = _ready_lease(page, previous)
            assert lease.pair.is_qualification
            page.keyboard.press("1" if lease.left_image_id == lease.pair.image_correct_id else "2")
            previous = str(lease.pk)
        after = _ready_lease(page, previous)
        assert after.pair_id == normal.id
        row = Qualification.objects.get(user=annotator)
        assert (row.passed, row.correct, row.answered) == (True, 2, 2)
        assert accessibility_violations(page) == []

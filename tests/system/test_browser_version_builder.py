"""The dataset version builder in a real Chromium (issue 16: its checkboxes sat on their own lines, away from their
labels).

At 1366×768, 1920×1080 and a 390-px phone width every checkbox sits on the line of its own label's text, before it,
and clicking the text toggles the box; the page passes axe-core (no serious or critical violation) and never scrolls
sideways. Screenshots: test-artifacts/version-builder-<width>.png.
"""

import pytest
from playwright.sync_api import expect

from tests.support.browser import (
    WIDTH_IDS,
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


@pytest.mark.parametrize("width,height", WIDTHS, ids=WIDTH_IDS)
def test_each_checkbox_sits_on_its_labels_line_and_its_text_toggles_it(live_server, width, height):
    make_user("curator", "admin", password=PASSWORD)
    with chromium_page(live_server.url, width, height) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto("/curation/versions/new/")
        boxes = page.eval_on_selector_all(
            "#version-form input[type=checkbox]",
            """inputs => inputs.map(input => {
                const label = input.closest('label'), box = input.getBoundingClientRect();
                const range = document.createRange();
                const text = [...label.childNodes].find(n => n.nodeType === 3 && n.textContent.trim());
                range.selectNodeContents(text);
                const words = range.getBoundingClientRect();
                return {name: text.textContent.trim(), box: [box.left, box.top, box.bottom],
                        text: [words.left, words.top, words.bottom]};
            })""",
        )
        violations = accessibility_violations(page)
        wide = sideways_overflow(page)
        screenshot(page, f"version-builder-{width}")
        keep = page.locator("#id_keep_imported_splits")
        was = keep.is_checked()
        page.get_by_text("Keep imported splits").click()
        expect(keep).to_be_checked(checked=not was)
    assert len(boxes) >= 16 + 3 + 3, boxes  # tasks, disciplines, outcomes (and more)
    for b in boxes:
        (box_x, box_top, box_bottom), (text_x, text_top, text_bottom) = b["box"], b["text"]
        middle = (box_top + box_bottom) / 2
        assert text_top <= middle <= text_bottom, b  # on the text's line
        assert box_x < text_x, b  # before it
    assert violations == []
    assert wide <= 0, f"the page is {wide}px wider than the {width}-px viewport"

"""The annotator's experience in a real Chromium: the task guide on the annotate page (collapsible, under
``?``, linked from the task badge), confidence and reasons by keyboard without losing the 1/2/3/4 keys, the
progress line, the recent-judgements page with undo by id, and the admin's guide editor with a worked
example. Every page is checked with axe-core, for sideways scrolling, and screenshotted at the three widths
(test-artifacts/<page>-<width>.png)."""

import pytest
from playwright.sync_api import expect

from annotation.models import GuideExample, Judgement, Pair, Task, TaskGuide
from annotation.services import guides, queue
from curation.services import judging
from tests.support.browser import (
    WIDTH_IDS,
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_pair, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"
GUIDE = "Count the **brown flakes**: rust is *reddish brown*.\n\n- ignore the background\n- ignore the lighting"


def check(page, name: str, width: int) -> None:
    assert accessibility_violations(page) == []
    assert sideways_overflow(page) <= 0, f"{name} scrolls sideways at {width}px"
    screenshot(page, f"{name}-{width}")


@pytest.mark.parametrize("width,height", WIDTHS, ids=WIDTH_IDS)
def test_the_annotator_reads_the_guide_and_judges_with_confidence_and_a_reason_by_keyboard(live_server, width, height):
    make_user("chemist", "annotator", disciplines=["chemistry"], password=PASSWORD)
    admin = make_user("curator", "admin", password=PASSWORD)
    guides.save_guide(admin, Task.objects.get(code="RU"), body=GUIDE, reasons=["colour", "flakes"])
    for _ in range(3):
        make_pair("RU", k=3)
    with chromium_page(live_server.url, width, height) as page:
        sign_in(page, "chemist", PASSWORD)
        page.goto("/annotate/")
        annotate = page.locator("#annotate")
        expect(annotate).to_have_attribute("data-state", "ready")
        expect(page.locator("#task-badge")).to_have_attribute("href", "/guides/RU/")
        expect(page.locator("#progress")).to_have_text("0 judged today · about 3 left for you")
        page.click("#guide summary")
        expect(page.locator("#guide-text strong")).to_have_text("brown flakes")
        check(page, "annotate", width)
        page.click("#guide summary")  # fold it again

        page.keyboard.press("?")
        expect(page.locator("#help-guide-text strong")).to_have_text("brown flakes")
        page.keyboard.press("Escape")
        expect(page.locator("#help")).to_be_hidden()

        first = annotate.get_attribute("data-lease-id")
        page.check("input[name=confidence][value=unsure]")  # focus is on the radio now
        page.check("input[name=reason][value=flakes]")
        page.keyboard.press("2")  # still judges: the radios and boxes do not take the digit keys
        expect(annotate).not_to_have_attribute("data-lease-id", first)
        expect(annotate).to_have_attribute("data-state", "ready")
        expect(page.locator("#progress")).to_have_text("1 judged today · about 2 left for you")
        expect(page.locator("input[name=confidence][value='']")).to_be_checked()  # reset for the next pair
        expect(page.locator("input[name=reason][value=flakes]")).not_to_be_checked()

        page.click("#task-badge")
        expect(page.locator("h1")).to_have_text("Guide of RU · Rust")
        check(page, "guide", width)

    judgement = Judgement.objects.get(lease_id=int(first))
    assert judgement.choice == "right" and judgement.confidence == "unsure" and judgement.reasons == ["flakes"]


def test_the_annotator_undoes_an_older_judgement_from_their_recent_list(live_server):
    user = make_user("chemist", "annotator", disciplines=["chemistry"], password=PASSWORD)
    for _ in range(3):
        make_pair("RU", k=3)
    made = []
    for choice in ("left", "neither"):
        lease = queue.next_lease(user)
        made.append(judging.judge(user, lease.id, queue.JudgementInput(choice=choice, comment=f"said {choice}"))[0])
    older = made[0]
    with chromium_page(live_server.url) as page:
        sign_in(page, "chemist", PASSWORD)
        page.goto("/annotate/mine/")
        expect(page.locator(".my-judgement")).to_have_count(2)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            check(page, "my-judgements", width)
        page.set_viewport_size({"width": 1366, "height": 768})
        page.click(f"form.undo-form[data-judgement='{older.pk}'] button")
        page.wait_for_url("**/annotate/")
        annotate = page.locator("#annotate")
        expect(annotate).to_have_attribute("data-state", "ready")
        lease_id = int(annotate.get_attribute("data-lease-id"))
    assert not Judgement.objects.filter(pk=older.pk).exists()
    assert Judgement.objects.filter(pk=made[1].pk).exists()
    assert queue.live_lease_of(user).pk == lease_id and queue.live_lease_of(user).pair_id == older.pair_id


def test_the_admin_writes_a_guide_and_picks_a_worked_example_that_annotators_see(live_server):
    make_user("curator", "admin", password=PASSWORD)
    annotator = make_user("chemist", "annotator", disciplines=["chemistry"], password=PASSWORD)
    pair = make_pair("RU", k=1)
    lease = queue.next_lease(annotator)
    side = "left" if lease.left_image_id == pair.image_correct_id else "right"
    judging.judge(annotator, lease.id, queue.JudgementInput(choice=side))  # confirmed, complete
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto("/curation/guides/")
        page.click("a[href='/curation/guides/RU/']")
        page.fill("#id_body", GUIDE + "\n\n<script>document.title='owned'</script>")
        page.fill("#id_reasons", "colour\nflakes")
        page.click("#guide-form button[type=submit]")
        expect(page.locator("#guide-preview strong")).to_have_text("brown flakes")
        page.fill(f"#candidates li[data-pair='{pair.pk}'] input[name=note]", "Flaky brown crust: rust.")
        page.click(f"#candidates li[data-pair='{pair.pk}'] button")
        expect(page.locator(f"#examples li[data-pair='{pair.pk}']")).to_be_visible()
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            check(page, "guide-editor", width)
        assert page.title() != "owned"

        page.context.clear_cookies()
        page.set_viewport_size({"width": 1366, "height": 768})
        sign_in(page, "chemist", PASSWORD)
        page.goto("/guides/RU/")
        expect(page.locator("#examples .example-note")).to_have_text("Flaky brown crust: rust.")
        expect(page.locator("#guide-body")).to_contain_text("<script>document.title='owned'</script>")
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            check(page, "guide-with-example", width)
        assert page.title() != "owned"
    guide = TaskGuide.objects.get(task__code="RU")
    assert guide.reasons == ["colour", "flakes"]
    assert GuideExample.objects.get(guide=guide).right_image_id == pair.image_correct_id
    assert Pair.objects.get(pk=pair.pk).status == Pair.Status.COMPLETE


def test_the_annotator_ends_a_session_and_sees_their_attention_checks(live_server, settings):
    from curation.services import gold

    settings.GOLD_RATE = 1.0  # the gold pair comes first
    make_user("chemist", "annotator", disciplines=["chemistry"], password=PASSWORD)
    admin = make_user("curator", "admin", password=PASSWORD)
    golden = make_pair("RU")
    gold.mark_gold(admin, golden.pk, "expected")
    make_pair("RU")
    with chromium_page(live_server.url) as page:
        sign_in(page, "chemist", PASSWORD)
        page.goto("/annotate/")
        annotate = page.locator("#annotate")
        expect(annotate).to_have_attribute("data-state", "ready")
        first = annotate.get_attribute("data-lease-id")
        page.keyboard.press("3")  # both: never the gold answer ("expected")
        expect(annotate).not_to_have_attribute("data-lease-id", first)
        expect(annotate).to_have_attribute("data-state", "ready")
        page.keyboard.press("3")
        expect(page.locator("#empty-state")).to_be_visible()
        page.click("#end-session button")
        page.wait_for_url("**/curation/sessions/")
        summary = page.locator("#latest-session .session-summary")
        expect(summary).to_contain_text("You judged 2 pairs.")
        expect(summary).to_contain_text("Attention checks: 0 of 1 right (0%).")
        expect(page.locator("#latest-session .check-wrong")).to_have_count(1)
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            check(page, "sessions", width)
        page.goto("/annotate/")
        expect(page.locator("#session-count")).to_have_text("0")

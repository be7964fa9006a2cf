"""The annotate page in a real Chromium: log in, judge by keyboard, undo, and check the rows.

The left/right order is random per lease, so the assertions read it back from each judgement's
lease rather than assuming which image was shown where.
"""

import json

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from annotation.models import Judgement, Lease
from bench.annotate_keys import KEY_LATENCY_PROBE, press_and_measure, summary
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.factories import make_pair, make_user

# transaction=True: the live server thread must see this test's rows. serialized_rollback=True:
# the seeded taxonomy and role groups are restored even if an earlier transactional test flushed them.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def page(live_server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()
        # Playwright's greenlet gives the test body its own context, hence its own database
        # connection (Django keeps them per context); close it, or the test database cannot be dropped.
        connections.close_all()


def ready_lease_id(page, previous: str | None = None) -> str:
    """Wait until a lease other than ``previous`` is on screen with both images loaded."""
    annotate = page.locator("#annotate")
    expect(annotate).to_have_attribute("data-state", "ready")
    if previous is not None:
        expect(annotate).not_to_have_attribute("data-lease-id", previous)
        expect(annotate).to_have_attribute("data-state", "ready")
    return annotate.get_attribute("data-lease-id")


def test_it_judges_undoes_and_rejudges_by_keyboard(page):
    user = make_user("chemist", "annotator", disciplines=["chemistry"], password="a-long-test-password")
    for _ in range(3):
        make_pair("RU", k=3)

    page.goto("/accounts/login/")
    page.fill("#id_username", "chemist")
    page.fill("#id_password", "a-long-test-password")
    page.click("button[type=submit]")
    expect(page.locator("#start-annotating")).to_be_visible()

    page.goto("/annotate/")
    first = ready_lease_id(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate.png"))
    page.keyboard.press("1")

    second = ready_lease_id(page, first)
    page.keyboard.press("2")
    third = ready_lease_id(page, second)
    second_prompt = Lease.objects.select_related("pair__tuple").get(pk=second).pair.tuple.implicit_prompt

    page.keyboard.press("u")  # takes back "2" and shows that pair again, in the same order
    again = ready_lease_id(page, third)
    expect(page.locator("#prompt")).to_have_text(second_prompt)
    page.keyboard.press("1")

    last = ready_lease_id(page, again)
    page.click("#comment")
    page.keyboard.type("Rust 1 2 u s looks odd")  # keys typed into the comment must not act
    page.keyboard.press("Escape")
    page.check("#flag-image-broken")
    page.keyboard.press("2")

    expect(page.locator("#empty-state")).to_be_visible()
    expect(page.locator("#session-count")).to_have_text("3")

    judgements = {str(j.lease_id): j for j in Judgement.objects.filter(annotator=user).select_related("lease")}
    assert sorted(judgements) == sorted([first, again, last])
    expected = {first: ("left", "left_image_id"), again: ("left", "left_image_id"), last: ("right", "right_image_id")}
    for lease_id, (choice, side) in expected.items():
        judgement = judgements[lease_id]
        assert judgement.choice == choice
        assert judgement.chosen_image_id == getattr(judgement.lease, side)
        assert judgement.time_spent_ms is not None
    assert judgements[last].comment == "Rust 1 2 u s looks odd"
    assert judgements[last].flag_image_broken
    undone = Lease.objects.get(pk=second)
    assert undone.state == Lease.State.CANCELLED
    assert not Judgement.objects.filter(lease=undone).exists()
    assert (undone.left_image_id, undone.right_image_id) == (
        judgements[again].lease.left_image_id,
        judgements[again].lease.right_image_id,
    )


def test_every_judgement_key_brings_the_next_pair_and_its_latency_is_recorded(page):
    """The per-key latency, measured with the benchmark's probe (bench/annotate_keys.py, which compares trees side
    by side and writes docs/benchmarks/pages.md). Here: each of 12 presses yields a measurement, i.e. a new lease
    on screen with both images loaded; the figures go to test-artifacts/annotate-key-latency.json, not into an
    assertion on time (speed is judged by the benchmark)."""
    make_user("timer", "annotator", disciplines=["chemistry"], password="a-long-test-password")
    for _ in range(13):
        make_pair("RU", k=3)
    page.context.add_init_script(KEY_LATENCY_PROBE)
    page.goto("/accounts/login/")
    page.fill("#id_username", "timer")
    page.fill("#id_password", "a-long-test-password")
    page.click("button[type=submit]")
    page.goto("/annotate/")

    latencies = press_and_measure(page, 12)

    assert len(latencies) == 12 and all(ms > 0 for ms in latencies), latencies
    assert Judgement.objects.filter(annotator__username="timer").count() == 12
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "annotate-key-latency.json").write_text(json.dumps({"ms": latencies, **summary(latencies)}))

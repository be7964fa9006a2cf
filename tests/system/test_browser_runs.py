"""The runs pages in a real Chromium: the list follows a run's progress by polling, the run page draws
its metrics as SVG and follows the log, and the cancel button cancels.

Workers are simulated by updating the run rows directly, as a worker's RunContext does.
"""

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from ml.models import Run
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


@pytest.fixture
def page(live_server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()
        connections.close_all()  # see test_browser_annotate: the greenlet's own database connection


@pytest.fixture
def admin(db):
    return make_user("ops", "admin", password=PASSWORD)


def log_in(page):
    page.goto("/accounts/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("nav a[href='/ml/runs/']")).to_be_visible()


def test_the_list_follows_progress_by_polling(page, admin):
    run = Run.objects.create(kind="generate", created_by=admin)
    done = Run.objects.create(kind="generate", created_by=admin, status="succeeded", progress=1.0)
    log_in(page)
    page.click("nav a[href='/ml/runs/']")
    row = page.locator(f'tr[data-run="{run.pk}"]')
    expect(row.locator(".run-status")).to_have_text("queued")
    expect(row.locator(".run-phase")).to_have_text("waiting for a GPU worker…")  # not a silent 0 %
    expect(row.locator(".run-percent")).to_be_hidden()
    expect(page.locator(f'tr[data-run="{done.pk}"] .run-percent')).to_have_text("100%")

    Run.objects.filter(pk=run.pk).update(status="running", progress=0.37, worker="gpu-7")
    expect(row.locator(".run-status")).to_have_text("running")
    expect(row.locator(".run-percent")).to_have_text("37%")
    expect(row.locator(".run-progress")).to_have_attribute("value", "37")
    expect(row.locator(".run-worker")).to_have_text("gpu-7")
    expect(row.locator(".run-phase")).to_have_text("")  # moving: the percentage says enough
    expect(row.locator(".run-percent")).to_be_visible()

    Run.objects.filter(pk=run.pk).update(status="succeeded", progress=1.0)
    expect(row.locator(".run-status")).to_have_text("succeeded")
    expect(row).to_have_attribute("data-status", "succeeded")


def test_the_run_page_plots_metrics_follows_the_log_and_cancels(page, admin):
    run = Run.objects.create(
        kind="train_scorer",
        created_by=admin,
        status="running",
        progress=0.2,
        log_tail="step 10",
        metrics=[{"step": 10, "loss": 0.9, "val_by_task": {"RU": 0.5}}],
    )
    log_in(page)
    page.goto(f"/ml/runs/{run.pk}/")
    expect(page.locator('#run-plots figure[data-plot="loss"] svg polyline')).to_have_count(1)
    expect(page.locator('#run-plots figure[data-plot="val_by_task"] svg circle')).to_have_count(1)  # one point

    Run.objects.filter(pk=run.pk).update(
        progress=0.6,
        log_tail="step 10\nstep 20",
        metrics=[
            {"step": 10, "loss": 0.9, "val_by_task": {"RU": 0.5, "BU": 0.4}},
            {"step": 20, "loss": 0.5, "val_by_task": {"RU": 0.7, "BU": 0.6}},
        ],
    )
    expect(page.locator("#run-log")).to_have_text("step 10\nstep 20")
    expect(page.locator("#run .run-percent")).to_have_text("60%")
    by_task = page.locator('#run-plots figure[data-plot="val_by_task"]')
    expect(by_task.locator("svg polyline")).to_have_count(2)
    expect(by_task.locator(".legend span")).to_have_text(["BU", "RU"])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-detail.png"), full_page=True)

    page.click("#cancel-run")
    expect(page.locator("#messages")).to_contain_text(f"Run {run.pk} cancelled.")
    expect(page.locator("#run .run-status")).to_have_text("cancelled")
    expect(page.locator("#cancel-run")).to_have_count(0)
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_a_failed_run_reloads_into_its_traceback(page, admin):
    run = Run.objects.create(kind="generate", created_by=admin, status="running")
    log_in(page)
    page.goto(f"/ml/runs/{run.pk}/")
    expect(page.locator("#cancel-run")).to_be_visible()
    Run.objects.filter(pk=run.pk).update(status="failed", error="RuntimeError: CUDA out of memory\n\nTraceback ...")
    expect(page.locator("#run-error .error")).to_have_text("RuntimeError: CUDA out of memory")
    expect(page.locator("#run-traceback")).to_contain_text("Traceback")
    expect(page.locator("#cancel-run")).to_have_count(0)

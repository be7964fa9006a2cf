"""The ML pages in a real Chromium, read as an admin reads them (issue 16, the ML bullet).

* a running run says "loading the model…" (the phase its worker reported) instead of a silent 0 %, then
  follows its progress, phase and log, the log without progress-bar glyphs or redraws;
* its metrics: counters as numbers, plots only of changing quantities, grouped, with named axes;
* a generate run's images as thumbnails of at least 256 px, tiny images enlarged without blur;
* a model's metrics as a table; the compare page, by default the active scorer against another one;
* the schedule form warns that a fixed seed repeats itself and adds the rotating seed; two "run now"s of a
  rotating schedule get different seeds.

Workers are simulated by updating the run rows as a worker's RunContext does. At each width of WIDTHS every page
has no serious axe-core finding, never scrolls sideways, and is screenshotted to test-artifacts/<page>-<width>.png.
"""

import json
import re
from unittest import mock

import pytest
from playwright.sync_api import expect

from ml.models import Run, Schedule
from ml.services import registry
from tests.support.browser import (
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_user
from tests.support.ml_registry_data import registry_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"

TRAINING = [
    {"optimizer_step": 1, "tuples_seen": 8, "epoch": 0.5, "loss": 0.9, "lr": 1e-4, "grad_norm": 2.5, "seconds": 1.2},
    {"optimizer_step": 2, "tuples_seen": 16, "epoch": 1.0, "loss": 0.6, "lr": 8e-5, "grad_norm": 1.5, "seconds": 1.1},
    {"optimizer_step": 3, "tuples_seen": 24, "epoch": 1.5, "loss": 0.4, "lr": 6e-5, "grad_norm": 1.1, "seconds": 1.1},
]


def bar(step: int, total: int = 4) -> str:
    return f"{step * 100 // total}%|{'█' * step}{'▌' if step < total else ''}{' ' * (total - step)}| {step}/{total}"


def checked_at_every_width(page, name: str) -> None:
    """At each width of WIDTHS: no serious axe finding, no sideways scrolling, a screenshot to look at."""
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)  # a run's plots are redrawn to the new width
        assert accessibility_violations(page) == [], width
        assert sideways_overflow(page) <= 0, f"{name} scrolls sideways at {width} px"
        screenshot(page, f"{name}-{width}")


@pytest.fixture
def admin(db):
    return make_user("ops", "admin", password=PASSWORD)


def test_a_run_says_it_loads_the_model_then_follows_its_phase_metrics_and_a_readable_log(live_server, admin):
    run = Run.objects.create(
        kind="sft",
        created_by=admin,
        status="running",
        worker="gpu-1",
        phase="loading the model",
        log_tail="12:00:00 started sft run\n12:00:01 "
        + "\r".join(f"Loading checkpoint shards: {bar(i)}" for i in range(5)),
    )
    with chromium_page(live_server.url) as page:
        sign_in(page, "ops", PASSWORD)
        page.goto(f"/ml/runs/{run.pk}/")
        expect(page.locator("#run .run-phase")).to_have_text("loading the model…")
        expect(page.locator("#run .run-percent")).to_be_hidden()  # no silent 0 %
        assert page.get_attribute("#run .run-progress", "value") is None  # an indeterminate bar, not an empty one
        expect(page.locator("#run-log")).to_have_text(
            "12:00:00 started sft run\n12:00:01 Loading checkpoint shards: 100% 4/4"
        )

        # The worker has loaded the model and trains: its phase, progress, metrics and log follow.
        redraws = "\n".join(f"12:00:0{i + 2} Steps: {bar(i)}" for i in range(5))
        Run.objects.filter(pk=run.pk).update(
            progress=0.37, phase="training", metrics=TRAINING, log_tail=f"{run.log_tail}\n{redraws}\n12:00:09 saved"
        )
        expect(page.locator("#run .run-phase")).to_have_text("training…")
        expect(page.locator("#run .run-percent")).to_have_text("37%")
        expect(page.locator("#run .run-percent")).to_be_visible()
        log = page.locator("#run-log")
        expect(log).to_have_text(
            "12:00:00 started sft run\n12:00:01 Loading checkpoint shards: 100% 4/4\n"
            "12:00:06 Steps: 100% 4/4\n12:00:09 saved"  # five redraws, one line; no block glyphs
        )
        assert not re.search("[\u2580-\u259f]", log.inner_text())

        groups = page.locator("#run-plots .metric-group")
        expect(groups).to_have_count(5)
        assert [groups.nth(i).get_attribute("data-group") for i in range(5)] == [
            "counters",
            "loss",
            "lr",
            "grad",
            "other",
        ]
        counters = page.locator("#run-counters [data-counter]")
        expect(counters).to_have_count(2)  # tuples seen and epoch: numbers, not plots
        expect(page.locator('#run-counters [data-counter="tuples_seen"] dd')).to_have_text("24")
        expect(page.locator('#run-counters [data-counter="epoch"] dd')).to_have_text("1.5")
        assert page.locator('figure[data-plot="tuples_seen"]').count() == 0
        loss = page.locator('figure[data-plot="loss"]')
        expect(loss.locator("text.axis-name")).to_have_text(["optimizer step", "loss"])
        expect(loss.locator("text.tick").first).to_be_visible()
        x_ticks = loss.locator("text.tick").all_text_contents()
        assert {"1", "2", "3"} <= set(x_ticks), x_ticks  # round ticks on the step axis
        expect(page.locator('figure[data-plot="lr"] text.axis-name')).to_have_text(["optimizer step", "learning rate"])
        lr_ticks = page.locator('figure[data-plot="lr"] text.tick').all_text_contents()
        assert "1.0e-4" in lr_ticks and "6.0e-5" in lr_ticks, lr_ticks  # small values in exponent notation
        checked_at_every_width(page, "ml-run")


def test_generated_images_show_as_thumbnails_of_at_least_256_px(live_server, admin):
    world = registry_world(admin)
    with chromium_page(live_server.url) as page:
        sign_in(page, "ops", PASSWORD)
        page.goto(f"/ml/runs/{world.generated.pk}/")
        thumb = page.locator("#run-artifacts img.thumb")
        expect(thumb).to_have_count(1)
        page.wait_for_function("document.querySelector('#run-artifacts img.thumb').naturalWidth > 0")
        shown = thumb.evaluate(
            "img => ({natural: img.naturalWidth, width: img.getBoundingClientRect().width,"
            " rendering: getComputedStyle(img).imageRendering})"
        )
        assert shown == {"natural": 16, "width": 256, "rendering": "pixelated"}  # 16 px drawn at 256, crisp
        checked_at_every_width(page, "ml-run-images")

        page.set_viewport_size({"width": 1366, "height": 768})
        thumb.click()
        expect(page).to_have_url(re.compile(rf"/ml/images/{world.image.pk}/origin/$"))
        origin = page.locator(".origin-image")
        page.wait_for_function("document.querySelector('.origin-image').naturalWidth > 0")
        assert origin.evaluate("img => img.getBoundingClientRect().width") >= 256


def test_a_models_metrics_are_a_table_and_compare_starts_with_the_active_scorer(live_server, admin):
    world = registry_world(admin)
    registry.activate_scorer(admin, world.tuned)
    world.tuned.metrics = {  # as a train_scorer run registers them, with what it measured for the active scorer
        **world.tuned.metrics,
        "dataset_version": world.version.pk,
        "comparison": {
            "model": world.base.pk,
            "name": "sciscore-base",
            "splits": {"test_C": {"accuracy": 0.7, "active_accuracy": 0.62, "delta": 0.08}},
        },
        "training": {"best_step": 40, "best_val_accuracy": 0.8, "optimizer_steps": 60, "tuples_seen": 15360},
    }
    world.tuned.save(update_fields=["metrics"])
    with chromium_page(live_server.url) as page:
        sign_in(page, "ops", PASSWORD)
        page.goto(f"/ml/models/{world.tuned.pk}/")
        table = page.locator("#model-accuracy")
        expect(table.locator("thead th")).to_have_text(["Task", "validation", "test_C"])
        expect(table.locator('tr[data-task="overall"] td')).to_have_text(["0.800", "0.700"])
        expect(table.locator('tr[data-task="FR"] td')).to_have_text(["–", "0.600"])
        expect(page.locator("#model-metrics pre")).to_have_count(0)  # no JSON dump
        expect(page.locator("#model-figures tr", has_text="training.tuples_seen").locator("td")).to_have_text("15,360")
        checked_at_every_width(page, "ml-model")

        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto("/ml/models/")
        form = page.locator("#compare-form")
        a, b = form.locator('select[name="a"]').input_value(), form.locator('select[name="b"]').input_value()
        assert (int(a), int(b)) == (world.tuned.pk, world.child.pk)  # two different models by default
        form.locator('select[name="b"]').select_option(str(world.base.pk))
        form.locator("button[type=submit]").click()
        expect(page).to_have_url(re.compile(rf"/ml/models/compare/\?a={world.tuned.pk}&b={world.base.pk}$"))
        validation = page.locator('table[data-split="validation"]')
        expect(validation.locator("thead th")).to_have_text(
            ["Task", "a: sciscore-v1 (active)", "b: sciscore-base", "b − a"]
        )
        expect(validation.locator('tr[data-task="overall"] td')).to_have_text(["0.800", "0.600", "-0.200"])
        # the base scorer has no test_C figure of its own: the one sciscore-v1's training run measured for it
        expect(page.locator('table[data-split="test_C"] tr[data-task="overall"] td')).to_have_text(
            ["0.700", "0.620", "-0.080"]
        )
        expect(page.locator("#borrowed-b")).to_be_visible()

        page.goto("/ml/models/compare/")  # nothing chosen: the active scorer against the latest other one
        expect(page.locator("#compare-default")).to_contain_text("the active scorer")
        expect(page.locator('table[data-split="validation"] thead th').nth(1)).to_have_text("a: sciscore-v1 (active)")
        expect(page.locator('table[data-split="validation"] thead th').nth(2)).to_have_text("b: sciscore-v2")
        checked_at_every_width(page, "ml-compare")


def test_the_schedule_form_warns_about_a_fixed_seed_and_rotating_seeds_differ(live_server, admin):
    generator = registry.register_model(admin, "generator_base", "tiny-flux", "/models/tiny-flux")
    template = {"model": generator.pk, "tuples": {"task": "RU", "limit": 5}, "seed": 11, "images_per_prompt": 2}
    with mock.patch("ml.tasks.execute_run.apply_async"), chromium_page(live_server.url) as page:
        sign_in(page, "ops", PASSWORD)
        page.goto("/ml/schedules/new/")
        warning = page.locator("#seed-warning")
        expect(warning).to_be_visible()  # generate with a fixed seed
        expect(page.locator("#schedule-form")).to_contain_text('"rotate_seed": true (kinds with a seed)')
        page.fill("#id_name", "nightly images")
        page.fill("#id_cron", "0 3 * * *")
        page.fill("#id_params", json.dumps(template))
        expect(warning).to_be_visible()
        checked_at_every_width(page, "ml-schedule-form")

        page.set_viewport_size({"width": 1366, "height": 768})
        page.click("#use-rotating-seed")
        expect(warning).to_be_hidden()
        assert json.loads(page.input_value("#id_params")) == {**template, "rotate_seed": True}
        page.fill("#id_params", json.dumps(template))  # typed back to a fixed seed: warned again
        expect(warning).to_be_visible()
        page.click("#use-rotating-seed")
        page.click("#schedule-form button[type=submit]")
        expect(page.locator("#schedule-messages")).to_contain_text("Schedule nightly images created.")
        schedule = Schedule.objects.get(name="nightly images")
        assert schedule.params["rotate_seed"] is True

        row = page.locator(f'tr[data-schedule="{schedule.pk}"]')
        row.locator("button", has_text="Run now").click()
        expect(page.locator("#schedule-messages")).to_contain_text("started run")
        Run.objects.filter(schedule=schedule).update(status="succeeded")
        page.locator(f'tr[data-schedule="{schedule.pk}"]').locator("button", has_text="Run now").click()
        expect(page.locator("#schedule-messages")).to_contain_text("started run")
    seeds = list(Run.objects.filter(schedule=schedule).order_by("id").values_list("params__seed", flat=True))
    assert seeds == [11, 13]  # fire count × images_per_prompt: no two firings share a seed

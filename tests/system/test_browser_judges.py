"""Judges in a real Chromium (issue 17, "Done means"): an admin registers a local LMM judge and an endpoint
judge from the browser, starts ``eval_judge`` for the LMM judge and for the active scorer from the run form,
and reads the live table with n and intervals beside the humans; a judge's cell leads to its items. A reviewer
opens the models' advisory opinions on the adjudication page only when asking, and they close when the next
pair comes.

The GPU worker is the test process: it executes the queued run the page started (``runs.execute_run``), as
the worker's task would. Pages pass axe-core and fit 1366 and 390 px; screenshots go to
test-artifacts/leaderboard-<width>.png.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ml.core.judges.tiny import TINY_JUDGE_ANSWER, make_tiny_qwen2_vl
from ml.models import ModelVersion, Run
from ml.services import runs
from tests.support.browser import accessibility_violations, chromium_page, screenshot, sideways_overflow, sign_in
from tests.support.factories import make_user
from tests.support.judging import judge
from tests.support.scoring_data import synthetic_pairs, synthetic_version, tiny_scorer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def _start_from_the_form(page, version, model_name: str) -> Run:
    page.goto("/ml/runs/new/?kind=eval_judge")
    page.select_option("#id_model", label=model_name)  # "name (kind)"
    page.select_option("#id_dataset_version", value=str(version.pk))
    before = set(Run.objects.values_list("pk", flat=True))
    page.click("#run-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Evaluate a judge: run")
    (run,) = Run.objects.exclude(pk__in=before)
    return runs.execute_run(run.pk)  # the worker


def test_an_admin_registers_judges_evaluates_them_and_reads_the_table(live_server, tmp_path):
    admin = make_user("ops", "admin", password=PASSWORD)
    scorer = tiny_scorer(admin, tmp_path / "scorer", name="tiny-sciscore", active=True)
    version = synthetic_version(admin, {"test_S": 3, "test_C": 2})
    judge_dir = make_tiny_qwen2_vl(tmp_path / "judge", answer=TINY_JUDGE_ANSWER)
    layout = {}
    with chromium_page(live_server.url) as page:
        sign_in(page, "ops", PASSWORD)
        page.goto("/ml/models/new/?kind=judge")
        page.fill("#id_name", "tiny-qwen")
        page.fill("#id_location", str(judge_dir))
        page.fill("#id_config", '{"backend": "local", "batch_size": 4}')
        page.click("#model-form button[type=submit]")
        expect(page.locator("h1")).to_contain_text("tiny-qwen")

        page.goto("/ml/models/new/?kind=judge")
        page.fill("#id_name", "remote")
        page.fill("#id_location", "http://127.0.0.1:8011/v1")
        page.fill("#id_config", '{"backend": "endpoint", "model": "qwen", "api_key": "sk-oops"}')
        page.click("#model-form button[type=submit]")
        expect(page.locator("#config-error")).to_contain_text("looks like a secret")
        page.fill("#id_config", '{"backend": "endpoint", "model": "qwen", "api_key_env": "JUDGE_API_KEY"}')
        page.click("#model-form button[type=submit]")
        expect(page.locator("h1")).to_contain_text("remote")
        assert ModelVersion.objects.get(name="remote").config["api_key_env"] == "JUDGE_API_KEY"

        lmm = _start_from_the_form(page, version, "tiny-qwen (judge)")
        assert lmm.status == "succeeded", lmm.error
        by_scorer = _start_from_the_form(page, version, "tiny-sciscore (scorer, active)")
        assert by_scorer.status == "succeeded" and by_scorer.input_model == scorer

        page.click("nav a[href='/ml/leaderboard/']")
        table = page.locator("table.leaderboard[data-view=discipline]")
        expect(table.locator("thead")).to_contain_text("S-Avg")
        row = table.locator(f'tr[data-run="{lmm.pk}"]')
        expect(row).to_contain_text("tiny-qwen")
        expect(row.locator("td").nth(3)).to_contain_text("50.0")  # S-Avg: half in both orders
        expect(row.locator("td").nth(3)).to_contain_text("n=3 · 50.0–50.0")
        expect(table.locator(f'tr[data-run="{by_scorer.pk}"]')).to_contain_text("tiny-sciscore")
        expect(table.locator("tr.reference").first).to_contain_text("(paper)")
        for width, height in ((1366, 768), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            layout[width] = (accessibility_violations(page), sideways_overflow(page))
            screenshot(page, f"leaderboard-{width}")
        page.set_viewport_size({"width": 1366, "height": 768})

        row.locator("td").nth(3).locator("a").click()
        expect(page.locator("#items tr[data-pair]")).to_have_count(3)
        expect(page.locator("#items")).to_contain_text("→ image 1")
        layout["items"] = (accessibility_violations(page), sideways_overflow(page))
    assert layout == {1366: ([], 0), 390: ([], 0), "items": ([], 0)}


def test_a_reviewer_sees_the_models_opinions_only_after_asking(live_server, tmp_path):
    admin = make_user("ops", "admin", password=PASSWORD)
    make_user("rev", "reviewer", password=PASSWORD)
    scorer = tiny_scorer(admin, tmp_path / "scorer", name="tiny-sciscore", active=True)
    people = [make_user(f"chem{n}", "annotator", disciplines=["chemistry"]) for n in range(3)]
    pairs = []
    for seed in (3, 4):  # each disputed: expected, other, both
        (pair,) = synthetic_pairs(1, "test", seed=seed, tasks=["RU"])
        for person, label in zip(people, ("expected", "other", "both"), strict=True):
            judge(person, pair, label)
        pairs.append(pair)
    first, second = pairs
    run = runs.start_run(admin, "score_pairs", {"model": scorer.pk, "only_open": False}, celery_task=_NoBroker())
    runs.execute_run(run.pk)
    with chromium_page(live_server.url) as page:
        sign_in(page, "rev", PASSWORD)
        page.goto(f"/curation/adjudication/{first.pk}/")
        expect(page.locator("#opinions")).to_be_hidden()
        page.click("#show-opinions")
        expect(page.locator("#opinion-list")).to_contain_text("Active scorer tiny-sciscore")
        expect(page.locator("#show-opinions")).to_have_attribute("aria-expanded", "true")
        page.keyboard.press("1")  # decide: the next pair comes without a page load
        expect(page.locator("#adjudicate")).to_have_attribute("data-pair", str(second.pk))
        expect(page.locator("#opinions")).to_be_hidden()
        expect(page.locator("#show-opinions")).to_have_attribute("aria-expanded", "false")


class _NoBroker:
    """``start_run``'s task argument when the test process is the worker: nothing is published."""

    def apply_async(self, *args, **kwargs):
        return None

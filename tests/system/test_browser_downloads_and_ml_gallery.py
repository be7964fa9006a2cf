"""Two admin flows in a real Chromium (issue 16, Admins and Reviewers):

* the raw judgements download, clicked from a dataset version's page (CSV, annotators as pseudonyms) and from the
  dashboard (JSONL with names): the files the browser saves hold every judgement of the scope;
* the pair gallery's ml filters: from /curation/pairs/ the admin follows the link to /ml/pairs/, picks the
  generate run, and only the pair whose image that run made is left.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from playwright.sync_api import expect

from annotation.models import Image
from curation.services import versions
from tests.support.browser import chromium_page, sign_in
from tests.support.factories import TupleFactory, make_pair, make_user
from tests.support.judging import judged
from tests.support.ml_registry_data import registry_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def saved(page, link) -> str:
    """Click ``link`` and return the text of the file the browser saves."""
    with page.expect_download() as download:
        link.click()
    return download.value.path().read_text()


def test_an_admin_downloads_a_versions_judgements_and_everyones_from_the_dashboard(live_server):
    admin = make_user("curator", "admin", password=PASSWORD)
    pair = judged("expected", "expected", "other")
    judged("other")  # outside the version (pending), inside "every judgement"
    version = versions.build_version(admin, "v-raw", outcomes=["confirmed"], min_agreement=0.5)
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto(f"/curation/versions/{version.pk}/")
        rows = list(csv.DictReader(io.StringIO(saved(page, page.locator("#raw-judgements > a", has_text="CSV")))))
        page.goto("/curation/dashboard/")
        named = page.locator("#raw-judgements .hint a", has_text="JSONL")
        lines = [json.loads(line) for line in saved(page, named).splitlines()]
    assert [int(row["pair_id"]) for row in rows] == [pair.pk] * 3
    assert sorted(row["label"] for row in rows) == ["expected", "expected", "other"]
    assert all(row["annotator"].startswith("a-") for row in rows), "pseudonyms by default"
    assert len(lines) == 4 and all(line["annotator"].startswith("expert-") for line in lines), "names on request"


def test_an_admin_narrows_the_gallery_to_the_pairs_a_run_generated(live_server):
    admin = make_user("curator", "admin", password=PASSWORD)
    world = registry_world(admin)
    made = make_pair("RU", tuple=TupleFactory())
    Image.objects.filter(pk=made.image_wrong_id).update(generator=f"run:{world.generated.pk}:tiny-flux")
    make_pair("RU")  # a pair no run made
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto("/curation/pairs/?task=RU")
        expect(page.locator("#gallery > li")).to_have_count(2)
        page.click("#ml-filters")
        expect(page).to_have_url(f"{live_server.url}/ml/pairs/?task=RU")
        page.select_option("#id_run", str(world.generated.pk))
        page.click("form.gallery-filters button[type=submit]")
        expect(page.locator("#gallery > li")).to_have_count(1)
        expect(page.locator("#gallery > li")).to_have_attribute("data-pair", str(made.pk))

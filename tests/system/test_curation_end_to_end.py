"""Issue 4's "Done means", in one test: from a fresh demo, judgements flow to consensus, a reviewer settles a
dispute, an admin freezes a version and downloads a parquet export that ``datasets`` loads, and re-importing it
changes nothing. Through the pages and the API where they exist (Django test client), services otherwise."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import datasets
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from annotation.models import Lease, Pair
from curation.models import Consensus, DatasetVersion, Job
from curation.services import exporting
from tests.support.datasets import snapshot

pytestmark = pytest.mark.django_db

PUBLISHED = {
    "implicit_prompt",
    "explicit_prompt",
    "superficial_prompt",
    "explicit_image",
    "superficial_image",
    "category",
    "law",
}


def logged_in(username: str) -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def judge_task(client: Client, task: str, plan: dict[int, str]) -> int:
    """Through the queue API, judge every pair of ``task`` open to this annotator with the label ``plan`` gives
    it (expected, other, both, neither: relative to the pair's expected image). Returns how many were judged."""
    judged = 0
    while True:
        response = client.post(f"/api/queue/next/?task={task}")
        if response.status_code == 204:
            return judged
        assert response.status_code == 200, response.content
        lease_id, pair_id = response.json()["lease_id"], response.json()["pair_id"]
        label = plan[pair_id]
        choice = label
        if label in ("expected", "other"):  # the display order is random: map the meaning to a side
            lease = Lease.objects.select_related("pair").get(pk=lease_id)
            expected_on_left = lease.left_image_id == lease.pair.image_correct_id
            choice = "left" if (label == "expected") == expected_on_left else "right"
        done = client.post(f"/api/leases/{lease_id}/judgement/", {"choice": choice}, content_type="application/json")
        assert done.status_code == 201, done.content
        judged += 1


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def stored(image) -> bytes:
    from django.core.files.storage import default_storage

    with default_storage.open(image.file.name, "rb") as handle:
        return handle.read()


def test_from_a_fresh_demo_to_a_loaded_export_and_an_idempotent_reimport(
    settings, tmp_path, eager_celery, offline_hf, django_capture_on_commit_callbacks
):
    # --- a fresh demo ---------------------------------------------------------------------------
    call_command("seed_demo", stdout=io.StringIO())
    assert Pair.objects.count() == 32 and set(Pair.objects.values_list("k", flat=True)) == {3}
    physics = list(
        Pair.objects.filter(tuple__task__discipline__slug="physics")
        .order_by("tuple__task__code", "pk")
        .values_list("pk", "tuple__task__code")
    )
    (task_a, task_b) = sorted({code for _, code in physics})[:2]
    a1, a2 = [pk for pk, code in physics if code == task_a]
    b1, b2 = [pk for pk, code in physics if code == task_b]

    # --- judgements flow to consensus (queue API) -----------------------------------------------
    plans = {  # pair → label per annotator
        a1: ["expected", "expected", "expected"],  # confirmed
        a2: ["expected", "other", "both"],  # disputed → adjudicated
        b1: ["other", "other", "expected"],  # reversed
        b2: ["expected", "expected", "neither"],  # confirmed
    }
    for n, username in enumerate(["physicist", "expert", "expert2"]):  # the demo's three physics annotators
        client = logged_in(username)
        plan = {pair: labels[n] for pair, labels in plans.items()}
        assert judge_task(client, task_a, plan) == 2 and judge_task(client, task_b, plan) == 2
    outcomes = dict(Consensus.objects.filter(pair__in=plans).values_list("pair_id", "outcome"))
    assert outcomes == {a1: "confirmed", a2: "disputed", b1: "reversed", b2: "confirmed"}

    # --- a reviewer settles the dispute (adjudication page) -------------------------------------
    reviewer = logged_in("reviewer")
    page = reviewer.get(f"/curation/adjudication/{a2}/")
    assert page.status_code == 200 and b"expert2" in page.content, "reviewers see who judged"
    settled = reviewer.post(f"/curation/adjudication/{a2}/", {"label": "expected", "comment": "the rule holds"})
    assert settled.status_code == 302
    consensus = Consensus.objects.get(pair_id=a2)
    assert (consensus.outcome, consensus.label) == ("adjudicated", "expected")

    # --- an admin freezes a version (builder page) ----------------------------------------------
    admin = logged_in("admin")
    frozen = admin.post(
        "/curation/versions/new/",
        {
            "name": "done-means-v1",
            "outcomes": ["confirmed", "reversed", "adjudicated"],
            "seed": 0,
            "train": 0.8,
            "validation": 0.1,
            "test": 0.1,
            "parent": "none",
        },
    )
    version = DatasetVersion.objects.get(name="done-means-v1")
    assert frozen.status_code == 302 and frozen["Location"] == reverse("curation:version-detail", args=[version.pk])
    labels = dict(version.members.values_list("pair_id", "label"))
    assert labels == {a1: "expected", a2: "expected", b1: "other", b2: "expected"}

    # --- starts a parquet export from the version page (eager job) ------------------------------
    page = admin.get(frozen["Location"]).content.decode()
    assert f'action="{reverse("curation:version-export", args=[version.pk])}"' in page
    with django_capture_on_commit_callbacks(execute=True):
        started = admin.post(reverse("curation:version-export", args=[version.pk]), {"format": "parquet"})
    job = Job.objects.get(kind="export")
    assert started["Location"] == reverse("curation:job-detail", args=[job.pk])
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["counts"]["rows"] == 4

    # --- downloads a parquet file through the link on the job page ------------------------------
    job_page = admin.get(started["Location"]).content.decode()
    links = re.findall(r'href="([^"]+\.parquet)"', job_page)
    assert links, job_page
    download = admin.get(links[0])
    assert download.status_code == 200 and download["Accept-Ranges"] == "bytes"
    data = body(download)
    export_dir = Path(exporting.export_dir(version, "parquet"))
    manifest = exporting.read_manifest(export_dir)
    name = "data/" + links[0].rsplit("/", 1)[1]  # the combined export's shards are in data/
    assert data[:4] == b"PAR1" and hashlib.sha256(data).hexdigest() == manifest[name]
    assert exporting.verify_manifest(export_dir) == []

    # --- datasets loads the export with Image features and the published columns ---------------
    loaded = datasets.load_dataset(str(export_dir), cache_dir=str(tmp_path / "hf-cache"))
    assert sum(split.num_rows for split in loaded.values()) == 4
    for split in loaded.values():
        assert set(split.column_names) >= PUBLISHED
        image_feature = getattr(split.features["explicit_image"], "feature", None)
        if image_feature is None and isinstance(split.features["explicit_image"], list):
            image_feature = split.features["explicit_image"][0]
        assert isinstance(image_feature, datasets.Image)
    rows = {row["pair_id"]: row for split in loaded.values() for row in split}
    reversed_pair = Pair.objects.get(pk=b1)
    swapped = rows[b1]["explicit_image"][0]
    assert isinstance(swapped, PILImage.Image)
    assert swapped.tobytes() == PILImage.open(io.BytesIO(stored(reversed_pair.image_wrong))).tobytes(), (
        "a reversed pair's explicit image is the one the experts chose"
    )

    # --- re-importing the export (import page, the exports under an import root) changes nothing -
    settings.IMPORT_ROOTS = [str(exporting.export_root())]
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        imported = admin.post("/curation/imports/new/", {"path": f"{version.pk}/parquet", "format": "auto"})
    job = Job.objects.get(kind="import")
    assert imported["Location"] == reverse("curation:job-detail", args=[job.pk])
    assert job.status == Job.Status.SUCCEEDED, job.error
    result = job.result
    assert result["rows"] == 4 and result["error_count"] == 0
    assert (
        result["tuples"]["created"],
        result["tuples"]["updated"],
        result["images"]["created"],
        result["pairs"]["created"],
    ) == (0, 0, 0, 0)
    assert snapshot() == before
    assert b"created 0" in admin.get(imported["Location"]).content

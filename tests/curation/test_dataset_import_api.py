"""POST /api/curation/imports/ runs a dataset import as a background job (admins only, import roots only),
and an export of a dataset version imports back into the same tuples, labels and image bytes."""

from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.models import AuditEvent, Image, Pair, PromptTuple
from curation.models import Job
from curation.services import importing
from tests.support.datasets import snapshot, train_row, write_train

pytestmark = pytest.mark.django_db

URL = "/api/curation/imports/"


@pytest.fixture
def root(settings, tmp_path, eager_celery) -> Path:
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORT_ROOTS = [str(folder)]
    return folder


@pytest.fixture
def dataset(root) -> Path:
    return write_train(
        root / "hub" / "train.parquet",
        [
            train_row("A nail in the rain for weeks", n_images=2),
            train_row("A cork in a tank of water", category="Buoyancy"),
        ],
    )


def post(api, user, body, capture):
    api.force_authenticate(user)
    with capture(execute=True):
        return api.post(URL, body, format="json")


def test_an_admin_starts_an_import_job_that_runs_to_success(
    api, admin_user, dataset, django_capture_on_commit_callbacks
):
    response = post(api, admin_user, {"path": "hub/train.parquet", "source": "hub"}, django_capture_on_commit_callbacks)

    assert response.status_code == 202, response.content
    assert (response.data["kind"], response.data["status"]) == ("import", "queued")
    job = api.get(f"/api/curation/jobs/{response.data['id']}/").data
    assert (job["status"], job["progress"]) == ("succeeded", 1.0), job["error"]
    assert job["result"]["pairs"] == {"created": 3, "skipped": 0}
    assert job["params"]["path"] == str(dataset.resolve())
    assert Pair.objects.count() == 3 and set(PromptTuple.objects.values_list("source", flat=True)) == {"hub"}
    assert AuditEvent.objects.filter(action="dataset.imported", target_type="job", target_id=str(job["id"])).exists()

    again = post(api, admin_user, {"path": str(dataset), "source": "hub"}, django_capture_on_commit_callbacks)
    rerun = api.get(f"/api/curation/jobs/{again.data['id']}/").data
    assert again.data["id"] != job["id"] and rerun["result"]["pairs"] == {"created": 0, "skipped": 3}


def test_an_identical_request_in_flight_gets_the_same_job(api, admin_user, dataset, django_capture_on_commit_callbacks):
    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(URL, {"path": "hub/train.parquet"}, format="json")
        second = api.post(URL, {"path": str(dataset), "format": "auto"}, format="json")
    assert first.status_code == second.status_code == 202
    assert first.data["id"] == second.data["id"] and len(callbacks) == 1
    assert Job.objects.count() == 1


def test_row_errors_fail_the_job_keep_the_report_and_write_nothing(
    api, admin_user, root, django_capture_on_commit_callbacks
):
    write_train(root / "bad.parquet", [train_row("A nail in the rain"), train_row("Alchemy", category="Alchemy")])
    response = post(api, admin_user, {"path": "bad.parquet"}, django_capture_on_commit_callbacks)
    job = Job.objects.get(pk=response.data["id"])
    assert job.status == Job.Status.FAILED and "1 row(s) have errors" in job.error
    assert job.result["errors"][0]["row"] == 2
    assert not PromptTuple.objects.exists() and not Image.objects.exists()


def test_a_dry_run_job_writes_nothing(api, admin_user, dataset, django_capture_on_commit_callbacks):
    response = post(
        api,
        admin_user,
        {"path": "hub", "format": "parquet", "split": "train", "dry_run": True},
        django_capture_on_commit_callbacks,
    )
    job = Job.objects.get(pk=response.data["id"])
    assert job.status == Job.Status.SUCCEEDED and job.result["pairs"]["created"] == 3 and job.result["dry_run"]
    assert not Pair.objects.exists()


@pytest.mark.parametrize(
    "path", ["../outside.parquet", "/etc/passwd", "hub/../../outside.parquet", "missing.parquet", "link.parquet", ""]
)
def test_paths_outside_the_import_roots_are_refused(
    api, admin_user, root, dataset, path, django_capture_on_commit_callbacks
):
    outside = write_train(root.parent / "outside.parquet", [train_row("A secret prompt")])
    (root / "link.parquet").symlink_to(outside)
    response = post(api, admin_user, {"path": path}, django_capture_on_commit_callbacks)
    assert response.status_code == 400 and "path" in response.data
    assert not Job.objects.exists()


def test_the_job_handler_refuses_paths_outside_the_roots_itself(admin_user, root, tmp_path):
    job = Job.objects.create(kind=Job.Kind.IMPORT, params={"path": str(tmp_path)}, dedup_key="x", created_by=admin_user)
    with pytest.raises(importing.ImportRefused):
        importing.run_import_job(job, lambda fraction, message="": None)


def test_the_default_import_root_is_media_imports(settings, tmp_path):
    del settings.IMPORT_ROOTS
    assert importing.import_roots() == [(Path(settings.MEDIA_ROOT) / "imports").resolve()]


@pytest.mark.parametrize("role", ["annotator", "reviewer", None])
def test_only_admins_may_import(api, role, annotator, reviewer, dataset, django_capture_on_commit_callbacks):
    user = {"annotator": annotator, "reviewer": reviewer, None: None}[role]
    if user is not None:
        api.force_authenticate(user)
    response = api.post(URL, {"path": "hub/train.parquet"}, format="json")
    assert response.status_code == (403 if user else 401)
    assert not Job.objects.exists()


def test_the_schema_documents_the_import_endpoint_without_warnings_of_its_own(tmp_path, settings, capsys):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--file", str(out))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("Warning", "Error"))]
    assert not [w for w in warnings if "import" in w.lower() or '"format"' in w], warnings
    text = out.read_text()
    assert "  /api/curation/imports/:" in text and "DatasetImportRequest:" in text


# --- round trip with curation/services/exporting/ -----------------------------------------------------


def _sha(image) -> str:
    import hashlib

    with image.file.open("rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _catalogue_rows():
    """Every pair as (implicit prompt, task, explicit prompt, superficial prompt, correct sha, wrong sha)."""
    pairs = Pair.objects.select_related("tuple__task", "image_correct", "image_wrong")
    return {
        (
            p.tuple.implicit_prompt,
            p.tuple.task.code,
            p.tuple.explicit_prompt,
            p.tuple.superficial_prompt,
            _sha(p.image_correct),
            _sha(p.image_wrong),
        )
        for p in pairs
    }


def test_an_exported_version_reimports_unchanged_and_into_a_fresh_catalogue(admin_user, tmp_path):
    from django.db import transaction

    from curation.services import exporting, versions
    from tests.support.judging import judged

    out = tmp_path / "export"
    with transaction.atomic():  # rolled back below: the "fresh database" is the state before this block
        judged("expected", "expected", "expected")
        reversed_pair = judged("other", "other", "expected")
        judged("expected", "expected", "other", task="BU")
        version = versions.build_version(admin_user, "v1")
        exporting.export_version(version, "parquet", out=out)
        expected, labels = set(), {}
        for member in version.members.select_related("pair__tuple__task"):
            pair = member.pair  # the catalogue's orientation: a row labelled "other" is put back into it
            expected.add(
                (
                    pair.tuple.implicit_prompt,
                    pair.tuple.task.code,
                    pair.tuple.explicit_prompt,
                    pair.tuple.superficial_prompt,
                    _sha(pair.image_correct),
                    _sha(pair.image_wrong),
                )
            )
            labels[_sha(pair.image_correct)] = member.label
        assert len(expected) == 3 and version.members.get(pair=reversed_pair).label == "other"

        before = snapshot()
        same_db = importing.import_dataset(out)  # re-importing into the catalogue it came from changes nothing
        assert same_db.ok, same_db.errors
        assert (
            same_db.tuples["created"],
            same_db.tuples["updated"],
            same_db.images["created"],
            same_db.pairs["created"],
        ) == (0, 0, 0, 0)
        assert snapshot() == before
        transaction.set_rollback(True)

    assert not PromptTuple.objects.exists() and not Pair.objects.exists()
    fresh = importing.import_dataset(out)

    assert fresh.ok, fresh.errors
    assert (fresh.tuples["created"], fresh.pairs["created"], fresh.images["created"]) == (3, 3, 6)
    assert _catalogue_rows() == expected  # same tuples, pairs (expected image = image_correct) and image bytes
    assert {_sha(p.image_correct): p.consensus.label for p in Pair.objects.all()} == labels  # and decisions
    assert set(Pair.objects.values_list("consensus__outcome", "status")) == {("imported", "complete")}


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_folder_import_refuses_a_link_out_of_the_import_roots_whether_its_target_exists_or_not(
    api, admin_user, root, dataset, tmp_path, target_exists, django_capture_on_commit_callbacks
):
    """A direct path to a file outside the roots was refused, but a folder inside them holding a link to one
    was imported. Every file the folder import reads is now checked after resolving links, before it is read,
    with one message whether the target exists or not; linked folders are not entered at all."""
    outside = tmp_path / "elsewhere" / "secret.parquet"
    if target_exists:
        write_train(outside, [train_row("A secret prompt")])
    (root / "hub" / "link.parquet").symlink_to(outside)
    (tmp_path / "elsewhere-folder").mkdir()
    write_train(tmp_path / "elsewhere-folder" / "more.parquet", [train_row("Another secret prompt")])
    (root / "hub" / "linked-folder").symlink_to(tmp_path / "elsewhere-folder")
    response = post(api, admin_user, {"path": "hub", "format": "parquet"}, django_capture_on_commit_callbacks)
    job = Job.objects.get(pk=response.data["id"])
    assert job.status == Job.Status.FAILED
    errors = [e["error"] for e in job.result["errors"]]
    assert errors == [
        f"{root.resolve() / 'hub' / 'link.parquet'}: a link to a file outside the folders this import may read"
    ]
    assert "elsewhere" not in str(job.result)  # neither the target nor the linked folder's contents are named
    assert not PromptTuple.objects.exists()


def test_a_link_that_stays_inside_the_import_roots_is_followed(
    api, admin_user, root, dataset, django_capture_on_commit_callbacks
):
    (root / "mirror").mkdir()
    (root / "mirror" / "train.parquet").symlink_to(dataset)  # e.g. a Hugging Face snapshot's links to its blobs
    response = post(api, admin_user, {"path": "mirror", "format": "parquet"}, django_capture_on_commit_callbacks)
    job = Job.objects.get(pk=response.data["id"])
    assert job.status == Job.Status.SUCCEEDED, job.error or job.result
    assert Pair.objects.count() == 3

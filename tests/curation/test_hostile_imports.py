"""Hostile and malformed dataset imports (curation/services/importing/, manage.py import_dataset and
POST /api/curation/imports/): every bad row is reported with its row number, its column and the reason,
and nothing is imported — the row count of every table is unchanged and no file lands in MEDIA_ROOT."""

import io
import json
import os
from io import StringIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.imaging import check_image
from annotation.models import Image, Pair, PromptTuple
from curation.models import Job
from curation.services.importing import import_dataset
from tests.support.datasets import TRAIN_SCHEMA, stored_bytes, train_row, write_train
from tests.support.factories import png_bytes
from tests.support.hostile_images import CASES, JPEG, PNG

pytestmark = pytest.mark.django_db
BIG = 10 * 1024 * 1024  # a 10 MB field


def table_counts() -> dict:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def media_files(settings) -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "imports" not in p.parts)


@pytest.fixture
def folder(settings, tmp_path) -> Path:
    """An import root with a few good images, and a secret outside it."""
    root = tmp_path / "media" / "imports" / "set"
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        (root / "images" / name).write_bytes(png_bytes())
    (tmp_path / "secret.png").write_bytes(png_bytes())
    settings.IMPORT_ROOTS = [str(root.parent)]
    return root


def good_line(n: int = 0, **fields) -> dict:
    return {
        "implicit_prompt": f"A steel nail left in the rain for weeks, number {n}",
        "correct_image": "images/a.png",
        "wrong_image": "images/b.png",
        "task": "RU",
        **fields,
    }


def write_lines(path: Path, lines: list) -> Path:
    path.write_bytes(
        b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines) + b"\n"
    )
    return path


def assert_nothing_imported(report, before: dict, settings, expected: list[tuple[int, str]]) -> None:
    """``expected``: (row, a text the error must hold) per bad row, in order; each error names a column."""
    assert not report.ok
    assert [e["row"] for e in report.errors] == [row for row, _ in expected], report.errors
    for error, (_, text) in zip(report.errors, expected, strict=True):
        assert text in error["error"], error
    assert all(len(e["error"]) < 1200 for e in report.errors), "an error echoes a huge value"
    assert table_counts() == before and media_files(settings) == []


# --- JSONL: one bad line among good ones ------------------------------------------------------------

JSONL_CASES = {
    "bad JSON in the middle": (b"{not json", "not JSON"),
    "not UTF-8": (b'{"implicit_prompt": "\xff\xfe caf\xe9"}', "not UTF-8"),
    "a list, not an object": ([1, 2, 3], "expected a JSON object"),
    "implicit_prompt a number": (good_line(implicit_prompt=5), "implicit_prompt must be a string"),
    "task a list": (good_line(task=["RU"]), "task must be a string"),
    "correct_image a number": (good_line(correct_image=7), "correct_image must be"),
    "provenance a string": (good_line(provenance="x"), "provenance must be an object"),
    "scene a number": (good_line(scene=3), "scene must be a string"),
    "scene unknown": (good_line(scene="cosmic"), "scene must be one of"),
    "implicit_prompt missing": (
        {k: v for k, v in good_line().items() if k != "implicit_prompt"},
        "missing implicit_prompt",
    ),
    "wrong_image missing": ({k: v for k, v in good_line().items() if k != "wrong_image"}, "wrong_image"),
    "missing image file": (
        good_line(correct_image="images/missing.png"),
        "correct_image 'images/missing.png' not found",
    ),
    "path traversal": (
        good_line(correct_image="../../etc/passwd"),
        "correct_image '../../etc/passwd': paths may not contain '..'",
    ),
    "absolute path": (good_line(wrong_image="/etc/passwd"), "wrong_image '/etc/passwd': absolute paths are refused"),
    "windows absolute path": (good_line(wrong_image="C:\\Windows\\win.ini"), "absolute paths are refused"),
    "symlink outside": (good_line(correct_image="images/link.png"), "correct_image 'images/link.png' leads outside"),
    "symlinked folder outside": (good_line(correct_image="linked/secret.png"), "leads outside"),
    "a directory as image": (good_line(correct_image="images"), "correct_image"),
    "not an image file": (good_line(correct_image="images/page.png"), "correct_image: The file is not an image"),
    "10 MB implicit prompt": (
        good_line(implicit_prompt="x" * BIG),
        f"implicit_prompt is {BIG} characters long; the limit is 2000",
    ),
    "10 MB explicit prompt": (good_line(explicit_prompt="x" * BIG), "explicit_prompt is"),
    "10 MB subject": (good_line(subject="x" * BIG), "subject is"),
    "10 MB task": (good_line(task="x" * BIG), "unknown task/category"),
    "10 MB image path": (good_line(correct_image="y" * BIG), "correct_image"),
    "10 MB source": (good_line(source="z" * BIG), "source is"),
    "10 MB provenance": (good_line(provenance={"note": "x" * BIG}), "provenance is"),
    "path traversal in an image list": (
        good_line(correct_images=["images/a.png", "../../etc/passwd"]),
        "correct_images '../../etc/passwd': paths may not contain '..'",
    ),
    "an image list of 10,000": (
        good_line(wrong_images=["images/b.png"] * 10_000),
        "wrong_images holds 10000 images; the limit is 100",
    ),
    "10,000 paraphrases": (good_line(implicit_prompts=["x"] * 10_000), "implicit_prompts has 10000 wordings"),
    "10 MB paraphrase": (good_line(explicit_prompts=["x" * BIG]), f"explicit_prompt is {BIG} characters long"),
    "10 MB rubric": (good_line(scene_scoring="x" * BIG), f"scene_scoring is {BIG} characters long; the limit is 20000"),
    "a label that is no label": (good_line(label="correct"), "label must be one of expected, other, both, neither"),
    "agreement a string": (good_line(label="expected", agreement="all"), "agreement must be a share"),
}


def hostile_files(folder: Path) -> None:
    os.symlink(folder.parent.parent.parent / "secret.png", folder / "images" / "link.png")
    os.symlink(folder.parent.parent.parent, folder / "linked")
    (folder / "images" / "page.png").write_bytes(b"<html><script>alert(1)</script></html>")


@pytest.mark.parametrize("line", list(JSONL_CASES.values()), ids=list(JSONL_CASES))
def test_a_bad_jsonl_line_in_the_middle_is_reported_and_nothing_is_imported(line, folder, settings):
    hostile_files(folder)
    path = write_lines(
        folder / "tuples.jsonl", [good_line(1), good_line(2, wrong_image="images/c.png"), line[0], good_line(4)]
    )
    before = table_counts()

    report = import_dataset(path)

    assert_nothing_imported(report, before, settings, [(3, line[1])])
    assert report.rows == 4


def test_the_same_bad_lines_fail_the_command_and_the_api_job_alike(
    folder, settings, api, admin_user, eager_celery, django_capture_on_commit_callbacks
):
    hostile_files(folder)
    cases = list(JSONL_CASES.values())
    path = write_lines(folder / "all.jsonl", [good_line(0)] + [line for line, _ in cases])
    expected = [(row, text) for row, (_, text) in enumerate(cases, start=2)]
    before = table_counts()
    out = StringIO()
    with pytest.raises(CommandError, match=f"{len(cases)} row"):
        call_command("import_dataset", str(path), "--json", stdout=out)
    assert_nothing_imported(_Report(json.loads(out.getvalue())), before, settings, expected)

    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/curation/imports/", {"path": "set/all.jsonl"}, format="json")
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == Job.Status.FAILED and f"{len(cases)} row(s) have errors" in job.error
    before["curation.Job"] += 1
    before["annotation.AuditEvent"] = table_counts()["annotation.AuditEvent"]  # the job's own events
    assert_nothing_imported(_Report(job.result), before, settings, expected)
    assert not Image.objects.exists() and not PromptTuple.objects.exists()


class _Report:
    def __init__(self, result: dict):
        self.errors, self.ok = result["errors"], not result["errors"]


def test_duplicated_rows_import_once(folder):
    path = write_lines(folder / "dupes.jsonl", [good_line(1), good_line(1), good_line(2), good_line(1)])
    report = import_dataset(path)
    assert report.ok and (report.rows, report.records) == (4, 4)
    assert (PromptTuple.objects.count(), Image.objects.count(), Pair.objects.count()) == (2, 2, 2)
    assert import_dataset(path).tuples == {"created": 0, "updated": 0, "skipped": 2}
    assert (PromptTuple.objects.count(), Image.objects.count(), Pair.objects.count()) == (2, 2, 2)


# --- hostile images inside an import ----------------------------------------------------------------


def test_each_hostile_image_is_rejected_on_its_row_or_stored_as_check_image_stores_it(folder, settings):
    """The image table of tests/support/hostile_images.py through a JSONL import: the rejected ones fail their row
    with the upload's message; then the others import and are stored byte for byte as an upload would be."""
    for number, case in enumerate(CASES):
        (folder / "images" / f"case{number}.png").write_bytes(case.make())
    lines = [good_line(n, correct_image=f"images/case{n}.png") for n in range(len(CASES))]
    rejected = [(n + 1, case) for n, case in enumerate(CASES) if case.outcome == "rejected"]
    before = table_counts()

    report = import_dataset(write_lines(folder / "images.jsonl", lines))

    assert [e["row"] for e in report.errors] == [row for row, _ in rejected]
    for error, (_, case) in zip(report.errors, rejected, strict=True):
        assert error["error"].startswith("correct_image: ") and _matches(case, error["error"]), error
    assert table_counts() == before and media_files(settings) == []

    kept = [line for line, case in zip(lines, CASES, strict=True) if case.outcome != "rejected"]
    dry = import_dataset(write_lines(folder / "kept.jsonl", kept), dry_run=True)
    report = import_dataset(write_lines(folder / "kept.jsonl", kept))
    assert report.ok, report.errors
    assert (dry.images, dry.pairs) == (report.images, report.pairs)  # the dry run hashes what is stored
    for line in kept:
        expected = check_image((folder / line["correct_image"]).read_bytes())
        image = Image.objects.get(sha256=expected.sha256)
        assert stored_bytes(image) == expected.data and image.format == expected.format
    assert import_dataset(write_lines(folder / "kept.jsonl", kept)).images["created"] == 0
    assert import_dataset(write_lines(folder / "kept.jsonl", kept), dry_run=True).images["created"] == 0


def _matches(case, message: str) -> bool:
    import re

    return bool(re.search(case.message, message)) or (case.message == "empty" and "non-empty" in message)


def test_hostile_images_inside_parquet_fail_their_rows(tmp_path, settings):
    rows = [train_row(f"A nail number {n} in the rain", explicit=[case.make() or b""]) for n, case in enumerate(CASES)]
    rejected = [n + 1 for n, case in enumerate(CASES) if case.outcome == "rejected"]
    before = table_counts()
    report = import_dataset(write_train(tmp_path / "train.parquet", rows))
    assert [e["row"] for e in report.errors] == rejected
    assert all(e["error"].startswith("explicit_image") for e in report.errors), report.errors
    assert table_counts() == before and media_files(settings) == []


# --- parquet: broken files, wrong types, missing columns, huge fields --------------------------------


def _parquet_bytes(rows, schema=TRAIN_SCHEMA) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


def _good_rows(n=3) -> list[dict]:
    return [train_row(f"A steel nail number {i} in the rain for weeks") for i in range(n)]


PARQUET_FILES = {
    "truncated file": (lambda: _parquet_bytes(_good_rows())[:-200], 0, ""),
    "cut in half": (lambda: (lambda d: d[: len(d) // 2])(_parquet_bytes(_good_rows())), 0, ""),
    "not parquet (html)": (lambda: b"<html><script>alert(1)</script></html>", 0, ""),
    "not parquet (a png)": (lambda: PNG, 0, ""),
    "PAR1 then garbage": (lambda: b"PAR1" + b"\x00" * 100 + b"PAR1", 0, ""),
    "missing image columns": (
        lambda: _parquet_bytes([{"implicit_prompt": "x"}], pa.schema([("implicit_prompt", pa.string())])),
        0,
        "missing column",
    ),
    "implicit_prompt an integer column": (
        lambda: _parquet_bytes(
            [
                {
                    "implicit_prompt": 7,
                    "explicit_image": [{"bytes": PNG, "path": None}],
                    "superficial_image": [{"bytes": JPEG, "path": None}],
                    "category": "Rust",
                }
            ],
            pa.schema(
                [
                    ("implicit_prompt", pa.int64()),
                    ("explicit_image", TRAIN_SCHEMA.field("explicit_image").type),
                    ("superficial_image", TRAIN_SCHEMA.field("superficial_image").type),
                    ("category", pa.string()),
                ]
            ),
        ),
        1,
        "implicit_prompt must be a string",
    ),
    "image column of strings": (
        lambda: _parquet_bytes(
            [
                {
                    "implicit_prompt": "A nail",
                    "explicit_image": "a.png",
                    "superficial_image": "b.png",
                    "category": "Rust",
                }
            ],
            pa.schema(
                [
                    ("implicit_prompt", pa.string()),
                    ("explicit_image", pa.string()),
                    ("superficial_image", pa.string()),
                    ("category", pa.string()),
                ]
            ),
        ),
        1,
        "explicit_image",
    ),
    "image path traversal": (
        lambda: _parquet_bytes([{**_good_rows(1)[0], "explicit_image": [{"bytes": None, "path": "../../etc/passwd"}]}]),
        1,
        "explicit_image '../../etc/passwd': paths may not",
    ),
    "absolute image path": (
        lambda: _parquet_bytes([{**_good_rows(1)[0], "superficial_image": [{"bytes": None, "path": "/etc/passwd"}]}]),
        1,
        "superficial_image '/etc/passwd': absolute",
    ),
    "10 MB prompt": (
        lambda: _parquet_bytes([_good_rows(1)[0], {**_good_rows(1)[0], "implicit_prompt": ["x" * BIG]}]),
        2,
        f"implicit_prompt is {BIG} characters long",
    ),
    "10 MB category": (
        lambda: _parquet_bytes([{**_good_rows(1)[0], "category": "x" * BIG}]),
        1,
        "unknown task/category",
    ),
}


@pytest.mark.parametrize("spec", list(PARQUET_FILES.values()), ids=list(PARQUET_FILES))
def test_a_broken_parquet_file_is_reported_and_nothing_is_imported(spec, tmp_path, settings):
    make, row, text = spec
    path = tmp_path / "train.parquet"
    path.write_bytes(make())
    before = table_counts()
    report = import_dataset(path, fmt="parquet")
    assert_nothing_imported(report, before, settings, [(row, text)])
    assert report.errors[0]["file"] == "train.parquet"


def test_a_malformed_prompt_list_is_an_error_of_row_0(tmp_path, settings):
    path = tmp_path / "prompts.json"
    path.write_text('[{"implicit_prompt": "A nail in the rain", "task": "RU"}, {"implicit_prompt": ')
    before = table_counts()
    report = import_dataset(path)
    assert_nothing_imported(report, before, settings, [(0, "invalid JSON: Expecting value: line 1 column")])


# --- the API refuses paths outside the import roots ---------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["../../etc/passwd", "/etc/passwd", "set/../../../secret.png", "escape", "set/a\x00b.jsonl", "x" * 1001, ""],
)
def test_the_api_refuses_a_path_outside_the_import_roots(value, folder, api, admin_user):
    os.symlink(folder.parent.parent.parent, folder.parent / "escape")
    api.force_authenticate(admin_user)
    before = table_counts()
    response = api.post("/api/curation/imports/", {"path": value}, format="json")
    assert response.status_code == 400, response.content
    if "\x00" in value:  # refused for every endpoint by annotation.input_guard before the view reads it
        assert "NUL" in response.json()["detail"]
    else:
        assert "path" in response.json(), response.content
    assert table_counts() == before

"""Dataset import (curation/services/importing/, manage.py import_dataset): Science-T2I parquet of both row
shapes, JSONL with image folders, idempotency, all-or-nothing validation, untrusted paths, batched writes."""

import io
import json
import os
from io import StringIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image as PILImage

from annotation.models import AuditEvent, Image, Pair, PromptTuple
from curation.services import importing
from curation.services.importing import ImportRefused, import_dataset
from science_t2i.format import ImageRef, TupleRecord, write_parquet
from tests.support.datasets import jpeg_bytes, snapshot, stored_bytes, train_row, write_train
from tests.support.factories import make_pair, png_bytes

pytestmark = pytest.mark.django_db


def write_test_split(path: Path, prompts_and_tasks: list[tuple[str, str]]) -> tuple[Path, list[tuple[bytes, bytes]]]:
    images = [(png_bytes(), jpeg_bytes()) for _ in prompts_and_tasks]
    records = [
        TupleRecord(
            prompt, f"{prompt} explicit", f"{prompt} superficial", ImageRef(data=good), ImageRef(data=bad), task=task
        )
        for (prompt, task), (good, bad) in zip(prompts_and_tasks, images, strict=True)
    ]
    write_parquet(records, path)
    return path, images


# --- parquet --------------------------------------------------------------------------------------


def test_it_imports_train_style_rows_with_paraphrase_lists_and_several_images(tmp_path):
    rows = [
        train_row("An iron nail left in the rain for weeks", "Rust", n_images=2),
        train_row("A cork dropped into a tank of water", "buoyancy"),
    ]
    path = write_train(tmp_path / "data" / "train-00000-of-00001.parquet", rows)

    report = import_dataset(path)

    assert report.ok, report.errors
    assert (report.rows, report.records, report.format, report.mode) == (2, 3, "parquet", "single")
    assert report.tuples == {"created": 2, "updated": 0, "skipped": 0}
    assert report.images == {"created": 6, "skipped": 0}
    assert report.pairs == {"created": 3, "skipped": 0}
    nail = PromptTuple.objects.get(implicit_prompt="An iron nail left in the rain for weeks")
    assert (nail.task.code, nail.scene, nail.explicit_prompt) == ("RU", "simple", nail.implicit_prompt + ": explicit")
    assert nail.implicit_paraphrases == [nail.implicit_prompt + " (paraphrase)"]  # on the tuple, not provenance
    assert nail.explicit_paraphrases == ["another explicit"] and "implicit_prompts" not in nail.provenance
    assert (nail.provenance["split"], nail.provenance["law"], nail.source) == ("train", "chemistry", path.name)
    pairs = list(Pair.objects.filter(tuple=nail).order_by("id"))
    assert len(pairs) == 2
    for pair, raw in zip(pairs, rows[0]["explicit_image"], strict=True):
        assert stored_bytes(pair.image_correct) == raw["bytes"]  # explicit image = expected correct
        assert (pair.image_correct.kind, pair.image_wrong.kind) == ("explicit", "superficial")
        assert pair.image_wrong.format == "JPEG"
    assert PromptTuple.objects.get(task__code="BU").pairs.count() == 1


def test_it_imports_test_style_rows_and_reads_the_scene_from_the_split(tmp_path):
    write_test_split(tmp_path / "ds" / "test_C.parquet", [("Chocolate in a hot car in summer", "ME")])
    _, simple = write_test_split(tmp_path / "ds" / "test_S.parquet", [("Ice cubes on a sunny pavement", "ME")])

    report = import_dataset(tmp_path / "ds")

    assert report.ok, report.errors
    scenes = dict(PromptTuple.objects.values_list("implicit_prompt", "scene"))
    assert scenes == {"Chocolate in a hot car in summer": "complex", "Ice cubes on a sunny pavement": "simple"}
    pair = Pair.objects.get(tuple__implicit_prompt__startswith="Ice")
    assert (stored_bytes(pair.image_correct), stored_bytes(pair.image_wrong)) == simple[0]

    assert import_dataset(tmp_path / "ds", split="test_S").tuples == {"created": 0, "updated": 0, "skipped": 1}


def test_a_second_import_creates_nothing(tmp_path):
    path = write_train(
        tmp_path / "train.parquet",
        [
            train_row("A bronze statue exposed to the air for years", n_images=2),
            train_row("A steel bicycle left outside for months"),
        ],
    )
    import_dataset(path)
    before = snapshot()

    again = import_dataset(path)

    assert again.ok
    assert again.tuples == {"created": 0, "updated": 0, "skipped": 2}
    assert again.images == {"created": 0, "skipped": 6}
    assert again.pairs == {"created": 0, "skipped": 3}
    assert snapshot() == before


def test_a_bad_row_leaves_the_database_unchanged_and_is_reported_with_its_row(tmp_path):
    make_pair("RU")
    before = snapshot()
    truncated = png_bytes()[:-30]
    rows = [
        train_row("A copper pipe in the rain for a year"),
        train_row("An unknown law at work", category="Alchemy"),
        train_row("A silver spoon in salty air for years", explicit=[truncated]),
        {**train_row("No implicit prompt"), "implicit_prompt": []},
    ]
    path = write_train(tmp_path / "train.parquet", rows)

    report = import_dataset(path)

    assert not report.ok
    assert [(e["file"], e["row"]) for e in report.errors] == [
        ("train.parquet", 2),
        ("train.parquet", 3),
        ("train.parquet", 4),
    ]
    assert "unknown task/category 'Alchemy'" in report.errors[0]["error"]
    assert report.errors[1]["error"].startswith("explicit_image: The image is corrupt or truncated")
    assert "implicit_prompt" in report.errors[2]["error"]
    assert report.mode == ""
    assert snapshot() == before


def test_it_rejects_images_that_are_not_images_or_too_big(tmp_path, settings):
    settings.IMAGE_MAX_SIDE = 16
    big = io.BytesIO()
    PILImage.new("RGB", (32, 32)).save(big, "PNG")
    rows = [train_row("A gif", superficial=[b"GIF89a not really"]), train_row("Too big", explicit=[big.getvalue()])]
    report = import_dataset(write_train(tmp_path / "train.parquet", rows))
    assert [e["row"] for e in report.errors] == [1, 2]
    assert "superficial_image: The file is not an image" in report.errors[0]["error"]
    assert "longest side may be 16" in report.errors[1]["error"]
    assert not Image.objects.exists()


def test_a_pair_of_the_same_image_or_one_that_contradicts_another_is_an_error(tmp_path):
    a, b = png_bytes(), png_bytes()
    rows = [
        train_row("A nail in the rain for weeks", explicit=[a], superficial=[a]),
        train_row("A chain in the rain for weeks", explicit=[a], superficial=[b]),
        train_row("A chain in the rain for weeks", explicit=[b], superficial=[a]),
    ]
    report = import_dataset(write_train(tmp_path / "train.parquet", rows))
    assert [e["row"] for e in report.errors] == [1, 3]
    assert "same image" in report.errors[0]["error"]
    assert "contradicts train.parquet row 2" in report.errors[1]["error"]

    assert import_dataset(write_train(tmp_path / "one.parquet", [rows[1]])).ok
    flipped = import_dataset(write_train(tmp_path / "two.parquet", [rows[2]]))
    assert "contradicts stored pair" in flipped.errors[0]["error"]


def test_a_row_without_a_category_needs_a_task_default(tmp_path):
    path = write_train(tmp_path / "train.parquet", [train_row("A wax candle in a hot car", category="", law="")])
    assert "names no task" in import_dataset(path).errors[0]["error"]
    assert import_dataset(path, dry_run=True, task_default="none").ok
    assert import_dataset(path, task_default="ME").ok
    assert PromptTuple.objects.get().task.code == "ME"
    with pytest.raises(ImportRefused):
        import_dataset(path, task_default="XX")


def test_the_law_column_is_used_when_the_category_is_empty(tmp_path):
    path = write_train(
        tmp_path / "train.parquet", [train_row("Oil poured into water", category="", law="Immiscibility")]
    )
    assert import_dataset(path).ok
    assert PromptTuple.objects.get().task.code == "IM"


def test_a_dry_run_writes_nothing_and_counts_what_a_real_run_would_create(tmp_path):
    shared = png_bytes()
    path = write_train(
        tmp_path / "train.parquet",
        [
            train_row("A nail in the rain for weeks", explicit=[shared]),
            train_row("A chain in the rain for weeks", explicit=[shared]),
        ],
    )
    dry = import_dataset(path, dry_run=True)
    assert (dry.tuples["created"], dry.images, dry.pairs) == (
        2,
        {"created": 3, "skipped": 0},
        {"created": 2, "skipped": 0},
    )
    assert not PromptTuple.objects.exists() and not Image.objects.exists()
    real = import_dataset(path)
    assert (real.tuples, real.images, real.pairs) == (dry.tuples, dry.images, dry.pairs)
    again = import_dataset(path, dry_run=True)
    assert (again.tuples["created"], again.images["created"], again.pairs["created"]) == (0, 0, 0)


def test_parquet_image_paths_are_read_relative_to_the_file_and_may_not_escape(tmp_path):
    folder = tmp_path / "ds"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "good.png").write_bytes(png_bytes())
    (tmp_path / "outside.png").write_bytes(png_bytes())
    row = train_row("A nail in the rain for weeks")
    row["explicit_image"] = [{"bytes": None, "path": "img/good.png"}]
    bad = train_row("A chain in the rain for weeks")
    bad["explicit_image"] = [{"bytes": None, "path": "../outside.png"}]
    report = import_dataset(write_train(folder / "train.parquet", [row, bad]))
    assert [(e["row"], "'..'" in e["error"]) for e in report.errors] == [(2, True)]
    assert import_dataset(write_train(folder / "train.parquet", [row])).ok
    assert stored_bytes(Pair.objects.get().image_correct) == (folder / "img" / "good.png").read_bytes()


def test_a_missing_path_or_unreadable_file_is_an_error_of_row_0(tmp_path):
    report = import_dataset(tmp_path / "nope.parquet")
    assert report.errors[0]["row"] == 0 and "no such file" in report.errors[0]["error"]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 garbage")
    assert import_dataset(tmp_path / "broken.parquet").errors[0]["row"] == 0
    pq.write_table(pa.table({"implicit_prompt": ["x"]}), tmp_path / "cols.parquet")
    assert "missing column" in import_dataset(tmp_path / "cols.parquet").errors[0]["error"]


# --- JSONL ----------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "set" / "images"
    folder.mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (folder / name).write_bytes(png_bytes())
    (folder / "e.jpg").write_bytes(jpeg_bytes())
    return folder


def test_it_imports_jsonl_tuples_with_images_in_a_folder(tmp_path, image_folder):
    path = write_jsonl(
        tmp_path / "set" / "tuples.jsonl",
        [
            {
                "implicit_prompt": "A nail in the rain for weeks",
                "correct_image": "images/a.png",
                "wrong_image": "images/b.png",
                "explicit_prompt": "A rusty nail",
                "task": "rust",
                "subject": "nail",
            },
            "",
            {
                "implicit_prompt": "A cork in a tank of water",
                "correct_image": "images/c.png",
                "wrong_image": "images/e.jpg",
                "task": "BU",
                "split": "test_C",
                "source": "lab",
                "provenance": {"by": "x"},
            },
            {"implicit_prompt": "A prompt without images yet", "task": "EL"},
        ],
    )

    report = import_dataset(path)

    assert report.ok, report.errors
    assert (report.format, report.rows, report.records) == ("jsonl", 3, 2)
    assert report.tuples["created"] == 3 and report.pairs["created"] == 2
    nail = Pair.objects.get(tuple__task__code="RU")
    assert stored_bytes(nail.image_correct) == (image_folder / "a.png").read_bytes()
    assert (nail.tuple.subject, nail.tuple.explicit_prompt, nail.tuple.provenance["row"]) == ("nail", "A rusty nail", 1)
    cork = PromptTuple.objects.get(task__code="BU")
    assert (cork.scene, cork.source, cork.provenance) == (
        "complex",
        "lab",
        {"file": "tuples.jsonl", "row": 3, "by": "x"},
    )
    assert import_dataset(path).tuples == {"created": 0, "updated": 0, "skipped": 3}


def test_jsonl_image_paths_may_not_leave_the_file_folder(tmp_path, image_folder):
    (tmp_path / "secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "secret.png", image_folder / "link.png")
    good = {
        "implicit_prompt": "A nail in the rain for weeks",
        "correct_image": "images/a.png",
        "wrong_image": "images/b.png",
        "task": "RU",
    }
    path = write_jsonl(
        tmp_path / "set" / "tuples.jsonl",
        [
            good,
            {**good, "correct_image": "../secret.png"},
            {**good, "correct_image": str(tmp_path / "secret.png")},
            {**good, "correct_image": "images/link.png"},
            {**good, "correct_image": "images/../../secret.png"},
            {**good, "correct_image": "images/missing.png"},
            "{not json",
            {**good, "task": "Telepathy"},
        ],
    )

    report = import_dataset(path)

    assert [e["row"] for e in report.errors] == [2, 3, 4, 5, 6, 7, 8]
    messages = [e["error"] for e in report.errors]
    assert "'..'" in messages[0] and "absolute" in messages[1] and "outside" in messages[2]
    assert "'..'" in messages[3] and "not found" in messages[4] and "not JSON" in messages[5]
    assert "Telepathy" in messages[6]
    assert not PromptTuple.objects.exists() and not Image.objects.exists()


# --- batched writes, progress, audit --------------------------------------------------------------


def test_large_inputs_are_written_batch_by_batch_and_a_rerun_finishes_the_job(tmp_path, settings, monkeypatch):
    settings.IMPORT_SINGLE_TRANSACTION_MAX_BYTES = 1
    rows = [train_row(f"A steel nail number {i} in the rain for weeks") for i in range(5)]
    path = write_train(tmp_path / "train.parquet", rows)
    real_insert, calls = importing.bulk.insert_rows, []  # BulkWriter looks insert_rows up in importing.bulk

    def failing_insert(model, objs):
        if model is Pair:
            calls.append(1)
            if len(calls) == 2:  # the second batch's pairs
                raise RuntimeError("worker lost")
        return real_insert(model, objs)

    monkeypatch.setattr(importing.bulk, "insert_rows", failing_insert)
    with pytest.raises(RuntimeError):
        import_dataset(path, batch_size=2)
    # The first batch (rows 1-2) committed completely; the second rolled back completely.
    assert Pair.objects.count() == 2 and PromptTuple.objects.count() == 2 and Image.objects.count() == 4
    monkeypatch.setattr(importing.bulk, "insert_rows", real_insert)

    report = import_dataset(path, batch_size=2)

    assert report.ok and report.mode == "batched"
    assert report.tuples == {"created": 3, "updated": 0, "skipped": 2}
    assert report.pairs == {"created": 3, "skipped": 2}
    assert Pair.objects.count() == 5


def test_it_reports_progress_and_records_an_audit_event(tmp_path):
    path = write_train(tmp_path / "train.parquet", [train_row(f"Nail {i} in the rain for weeks") for i in range(3)])
    seen = []
    import_dataset(path, progress=lambda fraction, message="": seen.append((fraction, message)), batch_size=1)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.5 in fractions
    event = AuditEvent.objects.get(action="dataset.imported")
    assert event.target_type == "datasetimport" and event.after["pairs"] == {"created": 3, "skipped": 0}


def test_a_json_prompt_list_goes_through_the_prompt_importer(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt": "A nail in the rain", "object": "nail"}]))
    report = import_dataset(path, task_default="RU")
    assert (report.format, report.tuples["created"]) == ("prompts", 1)
    assert PromptTuple.objects.get().task.code == "RU"


# --- the command ----------------------------------------------------------------------------------


def test_the_command_prints_a_json_report_and_fails_on_errors(tmp_path):
    good = write_train(tmp_path / "good" / "train.parquet", [train_row("A nail in the rain for weeks")])
    out = StringIO()
    call_command("import_dataset", str(good), "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["pairs"] == {"created": 1, "skipped": 0} and summary["errors"] == []

    bad = write_train(tmp_path / "bad" / "train.parquet", [train_row("Alchemy", category="Alchemy")])
    out = StringIO()
    with pytest.raises(CommandError, match="1 row"):
        call_command("import_dataset", str(bad), "--json", stdout=out)
    assert json.loads(out.getvalue())["errors"][0]["row"] == 1


def test_the_command_shows_a_text_report(tmp_path):
    path = write_train(tmp_path / "train.parquet", [train_row("A nail in the rain for weeks")])
    out, err = StringIO(), StringIO()
    call_command(
        "import_dataset",
        str(path),
        "--format",
        "parquet",
        "--split",
        "train",
        "--source",
        "hub",
        "--dry-run",
        stdout=out,
        stderr=err,
    )
    assert "Dry run, nothing written" in out.getvalue() and "Pairs: 1 created" in out.getvalue()
    call_command("import_dataset", str(path), "--source", "hub", stdout=out, stderr=err)
    assert PromptTuple.objects.get().source == "hub"
    with pytest.raises(CommandError, match="unknown task"):
        call_command("import_dataset", str(path), "--task-default", "XX", stdout=out, stderr=err)

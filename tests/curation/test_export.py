"""Exports of a dataset version (curation.services.exporting): parquet, JSONL + images, WebDataset;
manifest, cache, temporary directory renamed into place, the job handler and the command.

Most tests build a version row by row (``make_version``) to control labels and splits exactly; one builds it
with :func:`curation.services.versions.build_version` from real judgements.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from curation.models import Job
from curation.services import exporting, jobs
from curation.tasks import run_job
from tests.support.versions import OUTCOME, make_version, manifest_ok, members, stored

pytestmark = pytest.mark.django_db


# --- parquet -----------------------------------------------------------------------------------------


def test_parquet_export_has_the_published_columns_splits_and_swapped_images(admin_user):
    version = make_version(admin_user)
    result = exporting.export_version(version, "parquet")
    folder = Path(result["path"])
    assert folder == exporting.export_dir(version, "parquet")
    names = sorted(p.name for p in (folder / "data").glob("*.parquet"))
    assert names == [
        "test_C-00000-of-00001.parquet",
        "test_S-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    table = pq.read_table(folder / "data" / "train-00000-of-00001.parquet")
    assert table.column_names[:9] == [
        "implicit_prompt",
        "explicit_prompt",
        "superficial_prompt",
        "explicit_image",
        "superficial_image",
        "scene_scoring",
        "real_scoring",
        "category",
        "law",
    ]
    assert set(table.column_names) >= {
        "tuple_id",
        "pair_id",
        "task",
        "discipline",
        "label",
        "consensus",
        "agreement",
        "n_judgements",
        "implicit_prompts",
        "scene",
        "subject",
    }
    rows = {row["pair_id"]: row for row in table.to_pylist()}
    train = members(version, "train")
    decided = [m for m in train if m.label in ("expected", "other")]
    assert set(rows) == {m.pair_id for m in decided}, "both/neither are left out of parquet"
    for member in decided:
        row, pair = rows[member.pair_id], member.pair
        correct, wrong = (pair.image_correct, pair.image_wrong)
        if member.label == "other":
            correct, wrong = wrong, correct  # the experts chose the image the catalogue expected to be wrong
        assert row["explicit_image"][0]["bytes"] == stored(correct)
        assert row["superficial_image"][0]["bytes"] == stored(wrong)
        assert row["explicit_image"][0]["path"] == f"{correct.sha256}.png"
        assert (row["implicit_prompt"], row["explicit_prompt"], row["superficial_prompt"]) == (
            pair.tuple.implicit_prompt,
            pair.tuple.explicit_prompt,
            pair.tuple.superficial_prompt,
        )
        assert (row["category"], row["law"], row["task"], row["discipline"]) == ("Rust", "RU", "RU", "chemistry")
        assert (row["tuple_id"], row["label"], row["n_judgements"]) == (pair.tuple_id, member.label, 3)
        assert row["consensus"] == OUTCOME[member.label]
        assert row["agreement"] == pytest.approx(member.agreement)
    counts = result["counts"]
    assert counts["rows"] == 6 and counts["splits"] == {"train": 3, "validation": 1, "test_S": 1, "test_C": 1}
    assert counts["excluded"] == {"train": 1, "test_C": 1}
    assert counts["labels"] == {"expected": 4, "other": 2}
    assert counts["tasks"] == {"RU": {"train": 3, "validation": 1, "test_S": 1, "test_C": 1}}
    manifest_ok(folder)
    assert {f["path"] for f in result["files"]} == {*exporting.read_manifest(folder), "MANIFEST.sha256"}
    assert result["bytes"] == sum((folder / f["path"]).stat().st_size for f in result["files"])
    assert result["manifest"] == "MANIFEST.sha256"


def test_the_dataset_card_maps_splits_and_states_counts_licence_and_provenance(admin_user):
    version = make_version(admin_user, name="card-v1")
    folder = Path(exporting.export_version(version, "parquet")["path"])
    card = (folder / "README.md").read_text()
    front = card.split("---\n")[1]
    for split in ("train", "validation", "test_S", "test_C"):
        assert f'  - split: {split}\n    path: "data/{split}-*.parquet"' in front
    assert "license: apache-2.0" in front
    assert "card-v1" in card and version.content_hash in card and "Apache-2.0" in card
    assert "| RU | 3 | 1 | 1 | 1 | 6 |" in card
    assert "swapped" in card and "both" in card


def test_parquet_shards_stay_under_the_shard_size(admin_user):
    version = make_version(admin_user, [("train", "expected")] * 5)
    one_row = sum(
        len(stored(img)) for img in (members(version)[0].pair.image_correct, members(version)[0].pair.image_wrong)
    )
    result = exporting.export_version(version, "parquet", shard_bytes=2 * one_row + 2000, batch_size=2)
    shards = sorted((Path(result["path"]) / "data").glob("train-*.parquet"))
    assert [s.name for s in shards] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.read_metadata(s).num_rows for s in shards] == [2, 2, 1]
    ids = [row for s in shards for row in pq.read_table(s, columns=["pair_id"]).column("pair_id").to_pylist()]
    assert ids == sorted(m.pair_id for m in members(version))


def test_a_finished_export_is_reused(admin_user, monkeypatch):
    version = make_version(admin_user, [("train", "expected")])
    first = exporting.export_version(version, "parquet")
    monkeypatch.setattr(
        exporting.source, "read_stored_file", lambda name: pytest.fail("a cached export reads no image")
    )
    calls = []
    again = exporting.export_version(version, "parquet", progress=lambda f, m="": calls.append(f))
    assert again == first and calls == [1.0]
    assert exporting.finished_export(version, "parquet") == first
    assert exporting.finished_export(version, "jsonl") is None


def test_a_failed_export_leaves_nothing_at_the_final_path(admin_user, monkeypatch):
    version = make_version(admin_user, [("train", "expected")] * 6)
    real, reads = exporting.source.read_stored_file, []

    def failing(name):
        reads.append(name)
        if len(reads) > 5:
            raise OSError("disk went away")
        return real(name)

    monkeypatch.setattr(exporting.source, "read_stored_file", failing)
    with pytest.raises(OSError, match="disk went away"):
        exporting.export_version(version, "parquet", batch_size=2)
    target = exporting.export_dir(version, "parquet")
    assert not target.exists()
    assert list(target.parent.iterdir()) == [], "the temporary directory is removed too"
    monkeypatch.setattr(exporting.source, "read_stored_file", real)
    result = exporting.export_version(version, "parquet", batch_size=2)
    assert result["counts"]["rows"] == 6
    manifest_ok(target)


def test_the_export_is_written_under_a_temporary_name_then_renamed(admin_user, monkeypatch):
    version = make_version(admin_user, [("train", "expected")])
    target = exporting.export_dir(version, "parquet")
    seen = []
    real = exporting.base.write_manifest

    def spy(folder):
        seen.append((folder, target.exists()))
        real(folder)

    monkeypatch.setattr(exporting.orchestration, "write_manifest", spy)
    exporting.export_version(version, "parquet")
    ((folder, final_existed),) = seen
    assert folder.parent == target.parent and folder.name.startswith(".parquet.tmp-") and not final_existed
    assert not folder.exists() and target.is_dir()


def test_an_unknown_format_is_refused(admin_user):
    with pytest.raises(exporting.ExportError, match="Unknown export format"):
        exporting.export_version(make_version(admin_user, []), "csv")


# --- JSONL --------------------------------------------------------------------------------------------


def test_jsonl_export_lists_every_member_with_images_named_by_sha256(admin_user):
    version = make_version(admin_user)
    result = exporting.export_version(version, "jsonl")
    folder = Path(result["path"])
    lines = [json.loads(line) for line in (folder / "tuples.jsonl").read_text().splitlines()]
    assert [r["pair_id"] for r in lines] == [
        m.pair_id for m in sorted(members(version), key=lambda m: (exporting.SPLITS.index(m.split), m.pair_id))
    ]
    by_pair = {r["pair_id"]: r for r in lines}
    for member in members(version):
        record, pair = by_pair[member.pair_id], member.pair
        assert record["label"] == member.label and record["split"] == member.split
        assert record["expected_image"] == f"images/{pair.image_correct.sha256}.png"
        assert record["other_image"] == f"images/{pair.image_wrong.sha256}.png"
        correct, wrong = (
            (pair.image_wrong, pair.image_correct)
            if member.label == "other"
            else (pair.image_correct, pair.image_wrong)
        )
        assert (folder / record["correct_image"]).read_bytes() == stored(correct)
        assert (folder / record["wrong_image"]).read_bytes() == stored(wrong)
        assert record["implicit_prompt"] == pair.tuple.implicit_prompt and record["task"] == "RU"
    for split in ("train", "validation", "test_S", "test_C"):
        per_split = [json.loads(line)["pair_id"] for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        assert per_split == sorted(m.pair_id for m in members(version, split))
    assert len(list((folder / "images").iterdir())) == 2 * len(lines)
    assert result["counts"]["rows"] == 8 and result["counts"]["excluded"] == {}
    manifest_ok(folder)


def test_jsonl_export_reads_back_with_the_ml_reader(admin_user):
    from science_t2i.format import read_jsonl

    version = make_version(admin_user, [("train", "expected"), ("train", "other")])
    folder = Path(exporting.export_version(version, "jsonl")["path"])
    records = read_jsonl(folder / "train.jsonl")
    assert [r.extra["label"] for r in records] == ["expected", "other"]
    for record, member in zip(records, members(version, "train"), strict=True):
        correct = member.pair.image_wrong if member.label == "other" else member.pair.image_correct
        assert record.correct_image.encoded() == stored(correct) and record.task == "RU"


# --- WebDataset ---------------------------------------------------------------------------------------


def test_webdataset_export_writes_samples_in_tar_shards(admin_user):
    version = make_version(admin_user)
    result = exporting.export_version(version, "webdataset")
    folder = Path(result["path"])
    assert sorted(p.name for p in folder.glob("*.tar")) == [
        "test_C-00000.tar",
        "test_S-00000.tar",
        "train-00000.tar",
        "validation-00000.tar",
    ]
    with tarfile.open(folder / "train-00000.tar") as tar:
        names = tar.getnames()
        decided = [m for m in members(version, "train") if m.label in ("expected", "other")]
        keys = [f"p{m.pair_id:09d}" for m in sorted(decided, key=lambda m: m.pair_id)]
        assert names == [f"{key}{suffix}" for key in keys for suffix in (".json", ".correct.png", ".wrong.png")]
        for member in decided:
            key = f"p{member.pair_id:09d}"
            meta = json.loads(tar.extractfile(f"{key}.json").read())
            assert (meta["pair_id"], meta["label"], meta["task"]) == (member.pair_id, member.label, "RU")
            assert meta["implicit_prompt"] == member.pair.tuple.implicit_prompt
            correct, wrong = (
                (member.pair.image_wrong, member.pair.image_correct)
                if member.label == "other"
                else (member.pair.image_correct, member.pair.image_wrong)
            )
            assert tar.extractfile(f"{key}.correct.png").read() == stored(correct)
            assert tar.extractfile(f"{key}.wrong.png").read() == stored(wrong)
    assert result["counts"]["excluded"] == {"train": 1, "test_C": 1}
    manifest_ok(folder)


def test_webdataset_shards_roll_over(admin_user):
    version = make_version(admin_user, [("validation", "expected")] * 3)
    result = exporting.export_version(version, "webdataset", shard_bytes=1)
    shards = sorted(Path(result["path"]).glob("*.tar"))
    assert [s.name for s in shards] == ["validation-00000.tar", "validation-00001.tar", "validation-00002.tar"]
    for shard in shards:
        with tarfile.open(shard) as tar:
            assert len(tar.getnames()) == 3


# --- with a version built by the service, the job and the command ----------------------------------------


def test_a_version_built_from_real_judgements_exports(admin_user):
    from curation.services.versions import build_version
    from tests.support.judging import judged_pair

    reversed_pair = judged_pair("other", "other", "expected")
    confirmed_pair = judged_pair("expected", "expected", "expected")
    version = build_version(admin_user, "judged-v1")
    result = exporting.export_version(version, "parquet")
    rows = {}
    for file in (Path(result["path"]) / "data").glob("*.parquet"):
        rows |= {row["pair_id"]: row for row in pq.read_table(file).to_pylist()}
    assert set(rows) == {reversed_pair.pk, confirmed_pair.pk}
    assert rows[reversed_pair.pk]["label"] == "other" and rows[reversed_pair.pk]["consensus"] == "reversed"
    assert rows[reversed_pair.pk]["explicit_image"][0]["bytes"] == stored(reversed_pair.image_wrong)
    assert rows[confirmed_pair.pk]["explicit_image"][0]["bytes"] == stored(confirmed_pair.image_correct)
    assert rows[reversed_pair.pk]["agreement"] == pytest.approx(2 / 3)


def test_the_export_job_handler_runs_an_export(admin_user):
    version = make_version(admin_user, [("train", "expected")])
    job, _ = jobs.start(
        Job.Kind.EXPORT, {"version": version.pk, "format": "webdataset"}, admin_user, celery_task=run_job
    )
    job = jobs.run(job.pk)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 1.0 and job.result["format"] == "webdataset" and job.result["counts"]["rows"] == 1
    assert Path(job.result["path"]) == exporting.export_dir(version, "webdataset")


def test_the_command_exports_by_name_or_id_to_a_folder(admin_user, tmp_path):
    version = make_version(admin_user, [("train", "expected"), ("test_S", "other")], name="cli-v1")
    out = tmp_path / "out" / "jsonl-export"
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("export_version", "cli-v1", "--format", "jsonl", "--out", str(out), stdout=stdout, stderr=stderr)
    assert "2 rows" in stdout.getvalue() and (out / "tuples.jsonl").is_file()
    assert "100%" in stderr.getvalue() or "1000/1000" in stderr.getvalue()
    manifest_ok(out)
    assert [p.name for p in out.parent.iterdir()] == ["jsonl-export"]
    stdout = io.StringIO()
    call_command(
        "export_version",
        str(version.pk),
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--json",
        "--no-progress",
        stdout=stdout,
    )
    assert json.loads(stdout.getvalue())["counts"]["rows"] == 2  # reused
    call_command("export_version", str(version.pk), "--format", "parquet", "--no-progress", stdout=io.StringIO())
    assert exporting.finished_export(version, "parquet") is not None


def test_the_command_refuses_an_unknown_version_or_a_foreign_folder(admin_user, tmp_path):
    make_version(admin_user, [("train", "expected")], name="cli-v2")
    with pytest.raises(CommandError, match="No dataset version"):
        call_command("export_version", "nope", "--no-progress")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="exists and is not an export"):
        call_command("export_version", "cli-v2", "--out", str(tmp_path / "busy"), "--no-progress")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".busy")]

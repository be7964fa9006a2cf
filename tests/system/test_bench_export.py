"""The export/import benchmark's data path at a tiny size (bench/export_import.py): what the bench seeds with
``bulk_create`` is a version the real export reads, its parquet loads with Hugging Face ``datasets``, and
the import brings back the same tuples, labels and image bytes into a fresh catalogue, so the bench times
the real paths on valid data. The timing itself is a command, not a test."""

from __future__ import annotations

import hashlib
import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from annotation.models import Image, Pair, PromptTuple
from curation.models import DatasetVersion, VersionMember
from curation.services import exporting, importing
from tests.support.paths import REPO

pytestmark = pytest.mark.django_db

datasets = pytest.importorskip("datasets")

N_PAIRS, SIDE = 20, 48


def _bench():
    spec = importlib.util.spec_from_file_location("bench_export_import", REPO / "bench" / "export_import.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _offline_hf(offline_hf):
    """Every test here loads exports with the `datasets` library, offline."""


def _sha(image: Image) -> str:
    with image.file.open("rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_the_bench_data_exports_loads_with_datasets_and_reimports_identically(tmp_path, settings):
    bench = _bench()
    images = bench.jpeg_cache(tmp_path / "cache", 2 * N_PAIRS, side=SIDE, processes=1, log=lambda m: None)
    assert len({sha for _, sha, _ in images}) == 2 * N_PAIRS  # distinct images
    assert bench.jpeg_cache(tmp_path / "cache", 2 * N_PAIRS, side=SIDE, processes=1) == images  # reused
    version = DatasetVersion.objects.get(pk=bench.seed(N_PAIRS, images, Path(settings.MEDIA_ROOT), side=SIDE))

    expected, labels, catalogue = set(), {}, set()
    for member in VersionMember.objects.filter(version=version).select_related(
        "pair__tuple__task", "pair__image_correct", "pair__image_wrong"
    ):
        pair = member.pair
        correct, wrong = (
            (pair.image_correct, pair.image_wrong)
            if member.label == "expected"
            else (pair.image_wrong, pair.image_correct)
        )
        expected.add(
            (
                pair.tuple.implicit_prompt,
                pair.tuple.task.code,
                pair.tuple.explicit_prompt,
                pair.tuple.superficial_prompt,
                _sha(correct),
                _sha(wrong),
            )
        )
        # the import puts a pair labelled "other" back into the catalogue's orientation, with that label
        catalogue.add(
            (
                pair.tuple.implicit_prompt,
                pair.tuple.task.code,
                pair.tuple.explicit_prompt,
                pair.tuple.superficial_prompt,
                _sha(pair.image_correct),
                _sha(pair.image_wrong),
                member.label,
            )
        )
        labels[member.label] = labels.get(member.label, 0) + 1
    assert len(expected) == N_PAIRS and labels == {"expected": 17, "other": 3}  # both orientations exported

    out = tmp_path / "export"
    result = exporting.export_version(version, "parquet", out=out)
    assert result["counts"]["rows"] == N_PAIRS and exporting.verify_manifest(out) == []

    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {split: loaded[split].num_rows for split in loaded} == {
        "train": 16,
        "validation": 2,
        "test_S": 1,
        "test_C": 1,
    }
    from_datasets = set()
    for split in loaded:
        for row in (
            loaded[split]
            .cast_column("explicit_image", datasets.List(datasets.Image(decode=False)))
            .cast_column("superficial_image", datasets.List(datasets.Image(decode=False)))
        ):
            correct, wrong = row["explicit_image"][0]["bytes"], row["superficial_image"][0]["bytes"]
            assert PILImage.open(io.BytesIO(correct)).size == (SIDE, SIDE)
            from_datasets.add(
                (
                    row["implicit_prompt"],
                    row["law"],
                    row["explicit_prompt"],
                    row["superficial_prompt"],
                    hashlib.sha256(correct).hexdigest(),
                    hashlib.sha256(wrong).hexdigest(),
                )
            )
    assert from_datasets == expected

    # A fresh catalogue (and a fresh media folder), then the platform's import of the bench's export.
    VersionMember.objects.all().delete()
    DatasetVersion.objects.all().delete()
    Pair.objects.all().delete()
    Image.objects.all().delete()
    PromptTuple.objects.all().delete()
    settings.MEDIA_ROOT = str(tmp_path / "media-import")

    report = importing.import_dataset(out, batch_size=7)
    assert report.ok, report.errors
    assert (report.tuples["created"], report.images["created"], report.pairs["created"]) == (
        N_PAIRS,
        2 * N_PAIRS,
        N_PAIRS,
    )
    imported = {
        (
            p.tuple.implicit_prompt,
            p.tuple.task.code,
            p.tuple.explicit_prompt,
            p.tuple.superficial_prompt,
            _sha(p.image_correct),
            _sha(p.image_wrong),
            p.consensus.label,
        )
        for p in Pair.objects.select_related("tuple__task", "image_correct", "image_wrong", "consensus")
    }
    assert imported == catalogue
    assert {(i.width, i.height, i.format, i.size_bytes > 0) for i in Image.objects.all()} == {
        (SIDE, SIDE, "JPEG", True)
    }
    assert {t.scene for t in PromptTuple.objects.filter(pairs__isnull=False)} == {"simple", "complex"}

    again = importing.import_dataset(out)
    assert again.ok and (again.tuples["created"], again.images["created"], again.pairs["created"]) == (0, 0, 0)

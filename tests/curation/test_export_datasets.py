"""The parquet export reads with Hugging Face ``datasets``: the published column names, the four splits
(from the dataset card's ``configs``), and the explicit/superficial images as ``datasets.Image`` features."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from curation.services import exporting
from tests.support.versions import make_version, members, stored

pytestmark = pytest.mark.django_db

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _offline_hf(offline_hf):
    """Every test here loads exports with the `datasets` library, offline."""


def _image_feature(feature):
    """The Image inside ``explicit_image``'s list feature (``List`` or, in older versions, ``Sequence``)."""
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list):
        inner = feature[0]
    return inner


def test_load_dataset_reads_the_export_with_its_card(admin_user, tmp_path):
    version = make_version(admin_user)
    folder = Path(exporting.export_version(version, "parquet")["path"])
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation", "test_S", "test_C"}
    assert {split: loaded[split].num_rows for split in loaded} == {
        "train": 3,
        "validation": 1,
        "test_S": 1,
        "test_C": 1,
    }
    features = loaded["train"].features
    for column in ("explicit_image", "superficial_image"):
        assert isinstance(_image_feature(features[column]), datasets.Image), features[column]
    for column in ("implicit_prompt", "explicit_prompt", "superficial_prompt", "category", "law", "task", "label"):
        assert features[column] == datasets.Value("string")
    assert features["pair_id"] == datasets.Value("int64")

    expected = {m.pair_id: m for m in members(version, "train")}
    for row in loaded["train"]:
        member = expected[row["pair_id"]]
        image = row["explicit_image"][0]
        assert isinstance(image, PILImage.Image) and image.size == (16, 16)
        correct = member.pair.image_wrong if member.label == "other" else member.pair.image_correct
        assert image.tobytes() == PILImage.open(io.BytesIO(stored(correct))).tobytes()
        assert row["category"] == "Rust" and row["implicit_prompt"] == member.pair.tuple.implicit_prompt


def test_load_dataset_parquet_with_data_dir_and_data_files(admin_user, tmp_path):
    version = make_version(
        admin_user, [("train", "expected"), ("train", "other"), ("validation", "expected"), ("test_S", "expected")]
    )
    folder = Path(exporting.export_version(version, "parquet")["path"])
    # data_dir infers the splits from data/<split>-NNNNN-of-NNNNN names: test_S stays test_S (not "test").
    by_dir = datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path / "cache-dir"))
    assert {split: by_dir[split].num_rows for split in by_dir} == {"train": 2, "validation": 1, "test_S": 1}
    assert isinstance(_image_feature(by_dir["train"].features["explicit_image"]), datasets.Image)
    files = {split: str(folder / "data" / f"{split}-*.parquet") for split in ("train", "validation", "test_S")}
    by_files = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache-files"))
    assert {split: by_files[split].num_rows for split in by_files} == {"train": 2, "validation": 1, "test_S": 1}
    row = by_files["train"].with_format(None)[1]
    other = members(version, "train")[1]
    assert other.label == "other" and row["label"] == "other"
    swapped = row["explicit_image"][0]
    assert isinstance(swapped, PILImage.Image)
    assert swapped.tobytes() == PILImage.open(io.BytesIO(stored(other.pair.image_wrong))).tobytes()

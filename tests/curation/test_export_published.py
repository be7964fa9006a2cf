"""The published layout (export format ``published``) and the combined export's loading: Science-T2I-Trainset
(one row per tuple, list columns), Science-T2I-S and Science-T2I-C as datasets of their own, exactly the
published columns and feature types, and every documented way of loading keeps test_S and test_C apart."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotation.models import Image, Task
from annotation.services import catalog
from curation.models import DatasetVersion, VersionMember
from curation.services import exporting
from science_t2i.format import PUBLISHED_COLUMNS
from tests.support.factories import TupleFactory, make_image, make_pair
from tests.support.versions import make_version, manifest_ok, stored

pytestmark = pytest.mark.django_db

datasets = pytest.importorskip("datasets")
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _offline_hf(offline_hf):
    """Every test here loads exports with the `datasets` library, offline."""


def _version_with_a_rich_tuple(admin):
    """A version whose train split holds one tuple with paraphrases, rubrics and three pairs over four
    images (one reversed), plus one simple train tuple, one test_S and one test_C member."""
    task = Task.objects.get(code="BU")
    rich = TupleFactory(
        task=task,
        implicit_prompt="A stone dropped into a pond.",
        explicit_prompt="A stone resting on the pond bed.",
        superficial_prompt="A stone floating.",
        implicit_paraphrases=["A pebble thrown in a lake."],
        explicit_paraphrases=["The stone sinks to the bottom."],
        superficial_paraphrases=[],
        scene_scoring="A stone and water are visible.",
        real_scoring="3: the stone is under water.",
        scene="complex",
    )
    e0, e1 = (make_image(Image.Kind.EXPLICIT, rich) for _ in range(2))
    s0, s1 = (make_image(Image.Kind.SUPERFICIAL, rich) for _ in range(2))
    pairs = [catalog.create_pair(rich, a, b)[0] for a, b in ((e0, s0), (e1, s1), (e0, s1))]
    n = next(_names)
    version = DatasetVersion.objects.create(
        name=f"published-{n}",
        content_hash=hashlib.sha256(f"p{n}".encode()).hexdigest(),
        counts={},
        filters={},
        split_ratios={"seed": 0},
        created_by=admin,
    )
    labels = ("expected", "expected", "expected")
    for pair, label in zip(pairs, labels, strict=True):
        VersionMember.objects.create(
            version=version,
            pair=pair,
            label=label,
            outcome="confirmed",
            agreement=1.0,
            n_judgements=3,
            split="train",
            group_key="1" * 64,
        )
    others = [("train", "other"), ("test_S", "expected"), ("test_C", "expected"), ("test_C", "both")]
    for split, label in others:
        VersionMember.objects.create(
            version=version,
            pair=make_pair("RU"),
            label=label,
            outcome={"other": "reversed", "both": "rejected"}.get(label, "confirmed"),
            agreement=1.0,
            n_judgements=3,
            split=split,
            group_key="2" * 64,
        )
    return version, rich, (e0, e1), (s0, s1)


def test_published_layout_has_three_datasets_with_exactly_the_published_columns(admin_user):
    version, rich, _, _ = _version_with_a_rich_tuple(admin_user)
    result = exporting.export_version(version, "published")
    folder = Path(result["path"])
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")) == [
        "Science-T2I-C/data/test-00000-of-00001.parquet",
        "Science-T2I-S/data/test-00000-of-00001.parquet",
        "Science-T2I-Trainset/data/train-00000-of-00001.parquet",
    ]
    for name, lists in (("Science-T2I-Trainset", True), ("Science-T2I-S", False), ("Science-T2I-C", False)):
        schema = pq.read_schema(next((folder / name / "data").glob("*.parquet")))
        assert schema.names == list(PUBLISHED_COLUMNS), name
        prompt_type = str(schema.field("implicit_prompt").type)
        assert prompt_type == ("list<element: string>" if lists else "string"), name
        assert str(schema.field("explicit_image").type) == "list<element: struct<bytes: binary, path: string>>"
        card = (folder / name / "README.md").read_text()
        assert ("sequence: string" in card) == lists and "sequence: image" in card
    assert result["counts"]["datasets"] == {
        "Science-T2I-Trainset": {"train": 2},
        "Science-T2I-S": {"test": 1},
        "Science-T2I-C": {"test": 1},
    }
    assert result["counts"]["excluded"] == {"test_C": 1}
    manifest_ok(folder)


def test_published_train_rows_hold_every_paraphrase_and_every_decided_image_once(admin_user):
    version, rich, (e0, e1), (s0, s1) = _version_with_a_rich_tuple(admin_user)
    folder = Path(exporting.export_version(version, "published")["path"])
    rows = pq.read_table(folder / "Science-T2I-Trainset/data/train-00000-of-00001.parquet").to_pylist()
    (row,) = [r for r in rows if r["implicit_prompt"][0] == rich.implicit_prompt]
    assert row["implicit_prompt"] == ["A stone dropped into a pond.", "A pebble thrown in a lake."]
    assert row["explicit_prompt"] == ["A stone resting on the pond bed.", "The stone sinks to the bottom."]
    assert row["superficial_prompt"] == ["A stone floating."]
    assert [i["bytes"] for i in row["explicit_image"]] == [stored(e0), stored(e1)]
    assert [i["bytes"] for i in row["superficial_image"]] == [stored(s0), stored(s1)]
    assert (row["scene_scoring"], row["real_scoring"]) == (rich.scene_scoring, rich.real_scoring)
    assert (row["category"], row["law"]) == ("Buoyancy", "BU")
    (reversed_row,) = [r for r in rows if r is not row]
    member = version.members.get(label="other")
    assert [i["bytes"] for i in reversed_row["explicit_image"]] == [stored(member.pair.image_wrong)]


def test_every_documented_way_of_loading_the_published_layout_keeps_the_test_sets_apart(admin_user, tmp_path):
    version, rich, _, _ = _version_with_a_rich_tuple(admin_user)
    folder = Path(exporting.export_version(version, "published")["path"])
    cache = iter(range(100))

    def load(*args, **kwargs):
        return datasets.load_dataset(*args, cache_dir=str(tmp_path / f"c{next(cache)}"), **kwargs)

    for name in ("Science-T2I-S", "Science-T2I-C"):
        for loaded in (load(str(folder / name)), load("parquet", data_dir=str(folder / name)), load(str(folder), name)):
            assert set(loaded) == {"test"} and loaded["test"].num_rows == 1, name
            features = loaded["test"].features
            assert features["implicit_prompt"] == datasets.Value("string")
            assert features["scene_scoring"] == datasets.Value("string")
    train = load(str(folder / "Science-T2I-Trainset"))
    assert set(train) == {"train"} and train["train"].num_rows == 2
    row = next(r for r in train["train"] if r["law"] == "BU")
    assert row["implicit_prompt"] == ["A stone dropped into a pond.", "A pebble thrown in a lake."]
    assert len(row["explicit_image"]) == 2 and row["explicit_image"][0].size == (16, 16)
    with pytest.raises(ValueError, match="(?i)config"):
        load(str(folder))  # three configs, no default: it asks which instead of merging the test sets


def test_the_combined_export_loaded_by_data_dir_keeps_test_s_and_test_c_apart(admin_user, tmp_path):
    version = make_version(admin_user)
    folder = Path(exporting.export_version(version, "parquet")["path"])
    for loaded in (
        datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path / "a")),
        datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "b")),
    ):
        assert {split: loaded[split].num_rows for split in loaded} == {
            "train": 3,
            "validation": 1,
            "test_S": 1,
            "test_C": 1,
        }


def test_the_combined_export_carries_paraphrases_rubrics_scene_and_subject(admin_user):
    version, rich, _, _ = _version_with_a_rich_tuple(admin_user)
    folder = Path(exporting.export_version(version, "parquet")["path"])
    rows = pq.read_table(folder / "data/train-00000-of-00001.parquet").to_pylist()
    row = next(r for r in rows if r["tuple_id"] == rich.pk)
    assert row["implicit_prompt"] == rich.implicit_prompt
    assert row["implicit_prompts"] == ["A stone dropped into a pond.", "A pebble thrown in a lake."]
    assert row["explicit_prompts"] == ["A stone resting on the pond bed.", "The stone sinks to the bottom."]
    assert (row["scene"], row["subject"]) == ("complex", rich.subject)
    assert (row["scene_scoring"], row["real_scoring"]) == (rich.scene_scoring, rich.real_scoring)


def test_every_card_states_our_category_and_law_convention(admin_user):
    version, _, _, _ = _version_with_a_rich_tuple(admin_user)
    combined = Path(exporting.export_version(version, "parquet")["path"])
    published = Path(exporting.export_version(version, "published")["path"])
    assert (
        "`category` holds the task name (e.g. `Buoyancy`) and `law` the task code"
        in (combined / "README.md").read_text()
    )
    for name in ("Science-T2I-Trainset", "Science-T2I-S", "Science-T2I-C"):
        assert "`category` holds the task name and `law` the task code" in (published / name / "README.md").read_text()

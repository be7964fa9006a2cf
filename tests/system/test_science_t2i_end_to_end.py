"""The whole Science-T2I round trip on the published layout: a published-layout fixture (a train set with list
columns, Science-T2I-S and -C) → import → experts judge → freeze → export in both layouts → `datasets` loads
each in every documented way → `train-scorer --recipe paper` reads it → per-task and per-discipline
evaluation is not empty → importing the export into an empty catalogue gives back the same tuples, scenes,
labels and image bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import Image, Judgement, Lease, Pair, PromptTuple
from annotation.services import queue
from curation.models import Consensus, DatasetVersion
from curation.services import exporting, judging, splits, versions
from curation.services.importing import import_dataset
from ml.cli import main as ml_main
from science_t2i.format import schema_with_features, science_t2i_fields
from tests.support.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

datasets = pytest.importorskip("datasets")
_colours = iter(range(1, 10_000))

# (implicit paraphrases, explicit paraphrases, superficial paraphrases, category, law, subject)
TRAIN_ROWS = [
    (
        ["A stone dropped into a pond.", "A pebble thrown into a lake."],
        ["A stone on the pond bed."],
        ["A stone floating on the pond."],
        "Physics",
        "Buoyancy",
    ),
    (
        ["An iron nail left in the rain for a month.", "A steel nail outdoors for weeks of rain."],
        ["A nail covered in orange rust.", "A rusty brown nail."],
        ["A shiny grey nail."],
        "Chemistry",
        "Rust",
    ),
    (
        ["An unripe mango.", "A mango picked too early."],
        ["A hard green mango."],
        ["A ripe yellow mango."],
        "Biology",
        "Ripeness",
    ),
]
TEST_ROWS = {
    "Science-T2I-S": [
        ("A candle flame in a room without air.", "EL", "physics"),
        ("A plant kept in a dark cupboard for a month.", "LR", "biology"),
    ],
    "Science-T2I-C": [
        ("A busy street after a week of freezing nights, puddles everywhere.", "SO", "physics"),
        ("A kitchen table with a cut apple left out for a day.", "DI", "physics"),
    ],
}


def _png() -> dict:
    n = next(_colours)
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), ((n * 53) % 256, (n * 97) % 256, (n * 31) % 256)).save(buffer, "PNG")
    return {"bytes": buffer.getvalue(), "path": f"img{n}.png"}


def _write(folder: Path, split: str, rows: list[dict], lists: bool) -> None:
    (folder / "data").mkdir(parents=True)
    schema = schema_with_features(science_t2i_fields(prompt_lists=lists))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "data" / f"{split}-00000-of-00001.parquet")


def published_fixture(root: Path) -> Path:
    """The published layout in miniature. Train rows: lists of paraphrases, 2 explicit and 3 superficial
    images, `category` holding the discipline and `law` the task name. Test rows: strings, `category` holding
    the task code and `law` the discipline (either column is read by value)."""
    rows = [
        {
            "implicit_prompt": ip,
            "explicit_prompt": ep,
            "superficial_prompt": sp,
            "explicit_image": [_png(), _png()],
            "superficial_image": [_png(), _png(), _png()],
            "scene_scoring": f"Scene: {ip[0]}",
            "real_scoring": "3: the outcome is shown.",
            "category": cat,
            "law": law,
        }
        for ip, ep, sp, cat, law in TRAIN_ROWS
    ]
    _write(root / "Science-T2I-Trainset", "train", rows, lists=True)
    for name, tests in TEST_ROWS.items():
        rows = [
            {
                "implicit_prompt": ip,
                "explicit_prompt": f"What {ip} implies.",
                "superficial_prompt": "Literal.",
                "explicit_image": [_png()],
                "superficial_image": [_png()],
                "scene_scoring": "Scene.",
                "real_scoring": "Reality.",
                "category": code,
                "law": discipline,
            }
            for ip, code, discipline in tests
        ]
        _write(root / name, "test", rows, lists=False)
    return root


def judge_everything(annotator) -> int:
    """The annotator judges every pair the queue gives them, picking the expected image; returns how many."""
    n = 0
    while (lease := queue.next_lease(annotator)) is not None:
        pair = lease.pair
        choice = "left" if lease.left_image_id == pair.image_correct_id else "right"
        judging.judge(annotator, lease.id, queue.JudgementInput(choice))
        n += 1
    return n


def seed_with_every_split(ratios: dict) -> int:
    """A seed for which the imported groups fall into all four splits."""
    tuples = list(PromptTuple.objects.values_list("implicit_prompt", "subject", "scene"))
    for seed in range(500):
        found = {splits.split_for(splits.group_key(p, s), scene, ratios, seed) for p, s, scene in tuples}
        if found == set(splits.SPLITS):
            return seed
    raise AssertionError("no seed puts the fixture into every split")


def catalogue() -> dict:
    """What must survive an export and an import elsewhere: per implicit prompt, the tuple's fields and its
    pairs as (sha256 of the expected image, sha256 of the other, kinds, label)."""
    result = {}
    for tuple_ in PromptTuple.objects.select_related("task"):
        pairs = sorted(
            (p.image_correct.sha256, p.image_wrong.sha256, p.image_correct.kind, p.image_wrong.kind, p.consensus.label)
            for p in tuple_.pairs.select_related("image_correct", "image_wrong", "consensus")
        )
        result[tuple_.implicit_prompt] = {
            "task": tuple_.task.code,
            "scene": tuple_.scene,
            "paraphrases": [tuple_.implicit_paraphrases, tuple_.explicit_paraphrases, tuple_.superficial_paraphrases],
            "prompts": [tuple_.explicit_prompt, tuple_.superficial_prompt],
            "rubrics": [tuple_.scene_scoring, tuple_.real_scoring],
            "pairs": pairs,
        }
    return result


def empty_the_catalogue() -> None:
    DatasetVersion.objects.all().delete()
    Judgement.objects.all().delete()
    Lease.objects.all().delete()
    Consensus.objects.all().delete()
    Pair.objects.all().delete()
    Image.objects.all().delete()
    PromptTuple.objects.all().delete()


def test_the_published_layout_round_trips_through_judging_freezing_training_and_evaluation(
    admin_user, tmp_path, settings, offline_hf, capsys
):
    settings.DEFAULT_OVERLAP_K = 1
    settings.MEDIA_ROOT = str(tmp_path / "media")
    source = published_fixture(tmp_path / "published")

    # Import, open for the experts: every image in a pair (3 train tuples × max(2, 3) pairs + 4 test pairs).
    report = import_dataset(source, decisions="open")
    assert report.ok, report.as_dict()["errors"]
    assert PromptTuple.objects.count() == 7 and Pair.objects.count() == 13
    assert not Consensus.objects.exists()
    mango = PromptTuple.objects.get(implicit_prompt="An unripe mango.")
    assert (mango.task.code, mango.implicit_paraphrases, mango.scene_scoring) == (
        "RI",
        ["A mango picked too early."],
        "Scene: An unripe mango.",
    )
    assert mango.images.count() == 5, "every image of both lists is kept"
    assert set(PromptTuple.objects.filter(scene="complex").values_list("task__code", flat=True)) == {"SO", "DI"}

    # Judge, freeze.
    expert = make_user("all-rounder", "annotator", disciplines=["physics", "chemistry", "biology"])
    assert judge_everything(expert) == 13
    ratios = {"train": 0.4, "validation": 0.2, "test": 0.4}
    version = versions.build_version(admin_user, "e2e", ratios=ratios, seed=seed_with_every_split(ratios))
    assert set(version.counts["splits"].values()) != {0}
    before = catalogue()

    # Export both layouts; every documented way of loading keeps the test sets apart.
    combined = Path(exporting.export_version(version, "parquet")["path"])
    published = Path(exporting.export_version(version, "published")["path"])
    cache = iter(range(100))

    def load(*args, **kwargs):
        return datasets.load_dataset(*args, cache_dir=str(tmp_path / f"hf-cache-{next(cache)}"), **kwargs)

    for loaded in (load(str(combined)), load("parquet", data_dir=str(combined))):
        assert {split: loaded[split].num_rows for split in loaded} == {
            split: n for split, n in version.counts["splits"].items() if n
        }
    for name, split in (("Science-T2I-S", "test_S"), ("Science-T2I-C", "test_C")):
        for loaded in (
            load(str(published / name)),
            load("parquet", data_dir=str(published / name)),
            load(str(published), name),
        ):
            assert dict(loaded.num_rows) == {"test": version.counts["splits"][split]}

    # The paper's recipe trains on the published train set (one row per tuple, lists) and selects on validation.
    tiny = tmp_path / "tiny"
    assert ml_main(["make-tiny", str(tiny), "--json"]) == 0
    capsys.readouterr()
    trainset = str(published / "Science-T2I-Trainset")
    assert (
        ml_main(
            [
                "train-scorer",
                "--recipe",
                "paper",
                "--model",
                str(tiny / "scorer"),
                "--train",
                trainset,
                "--train-split",
                "train",
                "--val",
                trainset,
                "--val-split",
                "validation",
                "--out",
                str(tmp_path / "run"),
                "--total-steps",
                "2",
                "--batch-size",
                "2",
                "--grad-accum",
                "1",
                "--eval-every",
                "1",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)

    # Per-task and per-discipline evaluation on both layouts: never empty, nothing to warn about.
    for data, split in ((str(published / "Science-T2I-S"), None), (str(combined), "test_C")):
        argv = ["eval-scorer", "--model", str(summary["best_path"]), "--data", data, "--json"]
        assert ml_main(argv + (["--split", split] if split else [])) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["by_task"] and result["by_discipline"] and not result["warnings"], result

    # An empty catalogue importing the combined export gets the same tuples, scenes, labels and bytes back.
    stored_bytes = {image.sha256: default_storage.open(image.file.name).read() for image in Image.objects.all()}
    empty_the_catalogue()
    assert import_dataset(combined).ok
    assert catalogue() == before
    assert Consensus.objects.filter(outcome="imported").count() == Pair.objects.count()
    for image in Image.objects.all():
        assert default_storage.open(image.file.name).read() == stored_bytes[image.sha256]

"""Dataset import, issue 13: every paraphrase and every image of a row (max(n, m) pairs), the rubrics, the
scene column, imported decisions with their provenance (or pairs left open), our combined export's label
column (a row labelled "other" comes back in the catalogue's orientation), the published folder layout,
and the dry run and both writers agreeing on all of it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.models import AuditEvent, Image, Pair, PromptTuple
from curation.models import Consensus
from curation.services import importing
from curation.services.importing import import_dataset
from tests.support.datasets import IMAGE, TRAIN_SCHEMA, jpeg_bytes, stored_bytes, write_train
from tests.support.factories import png_bytes

pytestmark = pytest.mark.django_db

TEST_SCHEMA = pa.schema(
    [
        ("implicit_prompt", pa.string()),
        ("explicit_prompt", pa.string()),
        ("superficial_prompt", pa.string()),
        ("explicit_image", IMAGE),
        ("superficial_image", IMAGE),
        ("scene_scoring", pa.string()),
        ("real_scoring", pa.string()),
        ("category", pa.string()),
        ("law", pa.string()),
    ]
)
TRAIN_RUBRIC_SCHEMA = pa.schema([*TRAIN_SCHEMA, ("scene_scoring", pa.string()), ("real_scoring", pa.string())])
# Our combined export: the published columns with string prompts, plus the platform's own.
EXPORT_SCHEMA = pa.schema(
    [
        *TEST_SCHEMA,
        ("implicit_prompts", pa.list_(pa.string())),
        ("explicit_prompts", pa.list_(pa.string())),
        ("superficial_prompts", pa.list_(pa.string())),
        ("tuple_id", pa.int64()),
        ("pair_id", pa.int64()),
        ("task", pa.string()),
        ("discipline", pa.string()),
        ("scene", pa.string()),
        ("subject", pa.string()),
        ("label", pa.string()),
        ("consensus", pa.string()),
        ("agreement", pa.float64()),
        ("n_judgements", pa.int64()),
    ]
)


def images(*data: bytes) -> list[dict]:
    return [{"bytes": d, "path": None} for d in data]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, rows: list[dict], schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def published_row(prompt: str, task: str = "Rust", **extra) -> dict:
    return {
        "implicit_prompt": prompt,
        "explicit_prompt": f"{prompt} (explicit)",
        "superficial_prompt": f"{prompt} (superficial)",
        "explicit_image": images(png_bytes()),
        "superficial_image": images(jpeg_bytes()),
        "scene_scoring": "",
        "real_scoring": "",
        "category": task,
        "law": "Chemistry",
        **extra,
    }


def export_row(prompt: str, label: str = "expected", **extra) -> dict:
    return {
        **published_row(prompt, task="Rust"),
        "law": "RU",
        "implicit_prompts": [prompt, f"{prompt}, said again"],
        "explicit_prompts": [f"{prompt} (explicit)", "explicit, said again"],
        "superficial_prompts": [],
        "tuple_id": 7,
        "pair_id": 11,
        "task": "RU",
        "discipline": "chemistry",
        "scene": "simple",
        "subject": "nail",
        "label": label,
        "consensus": "confirmed" if label == "expected" else "reversed",
        "agreement": 2 / 3,
        "n_judgements": 3,
        **extra,
    }


def pair_shas() -> set[tuple[str, str]]:
    return {
        (p.image_correct.sha256, p.image_wrong.sha256)
        for p in Pair.objects.select_related("image_correct", "image_wrong")
    }


# --- 1. every paraphrase and every image ------------------------------------------------------------------


def test_a_train_row_keeps_every_paraphrase_and_every_image_in_max_n_m_pairs(tmp_path):
    explicit, superficial = [png_bytes() for _ in range(3)], [jpeg_bytes() for _ in range(2)]
    row = {
        "implicit_prompt": ["A nail in the rain for weeks", "A nail left in the rain", "Rain on a nail"],
        "explicit_prompt": ["A rusty nail", "A rust-brown nail"],
        "superficial_prompt": ["A shiny nail"],
        "explicit_image": images(*explicit),
        "superficial_image": images(*superficial),
        "category": "Rust",
        "law": "Chemistry",
    }

    report = import_dataset(write_train(tmp_path / "train-00000-of-00001.parquet", [row]))

    assert report.ok, report.errors
    assert (report.rows, report.records, report.pairs, report.images) == (
        1,
        3,
        {"created": 3, "skipped": 0},
        {"created": 5, "skipped": 0},
    )
    # pair i = (explicit[i % 3], superficial[i % 2]): every image is in a pair
    assert pair_shas() == {
        (sha(explicit[0]), sha(superficial[0])),
        (sha(explicit[1]), sha(superficial[1])),
        (sha(explicit[2]), sha(superficial[0])),
    }
    assert {i.sha256: i.kind for i in Image.objects.all()} == {
        **{sha(d): "explicit" for d in explicit},
        **{sha(d): "superficial" for d in superficial},
    }
    nail = PromptTuple.objects.get()
    assert (nail.implicit_prompt, nail.explicit_prompt, nail.superficial_prompt) == (
        "A nail in the rain for weeks",
        "A rusty nail",
        "A shiny nail",
    )
    assert nail.implicit_paraphrases == ["A nail left in the rain", "Rain on a nail"]
    assert (nail.explicit_paraphrases, nail.superficial_paraphrases) == (["A rust-brown nail"], [])
    assert nail.prompts("implicit") == row["implicit_prompt"]

    again = import_dataset(write_train(tmp_path / "train-00000-of-00001.parquet", [row]))
    assert (again.tuples["skipped"], again.pairs, again.images["created"]) == (1, {"created": 0, "skipped": 3}, 0)


def test_a_bad_image_of_a_longer_list_names_its_column_and_place(tmp_path):
    row = {
        "implicit_prompt": ["A nail in the rain"],
        "explicit_prompt": ["A rusty nail"],
        "superficial_prompt": ["A shiny nail"],
        "explicit_image": images(png_bytes(), png_bytes()[:-30]),
        "superficial_image": images(jpeg_bytes()),
        "category": "Rust",
        "law": "",
    }
    report = import_dataset(write_train(tmp_path / "train.parquet", [row]))
    assert report.errors[0]["error"].startswith("explicit_image 2: The image is corrupt or truncated")
    assert not Image.objects.exists()


def test_our_exports_plural_prompt_columns_add_every_wording(tmp_path):
    report = import_dataset(
        write(tmp_path / "train-00000-of-00001.parquet", [export_row("A nail in the rain")], EXPORT_SCHEMA)
    )
    assert report.ok, report.errors
    nail = PromptTuple.objects.get()
    assert nail.implicit_paraphrases == ["A nail in the rain, said again"]
    assert nail.explicit_paraphrases == ["explicit, said again"] and nail.subject == "nail"


def test_jsonl_image_lists_pair_every_image_and_their_paths_may_not_escape(tmp_path):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (folder / "img" / f"{name}.png").write_bytes(png_bytes())
    (tmp_path / "secret.png").write_bytes(png_bytes())
    line = {
        "implicit_prompt": "A nail in the rain",
        "implicit_prompts": ["A nail in the rain", "Rain, nail"],
        "correct_image": "img/a.png",
        "correct_images": ["img/a.png", "img/b.png"],
        "wrong_image": "img/c.png",
        "task": "RU",
        "scene_scoring": "A nail is visible.",
        "real_scoring": "3: rust; 0: shiny",
    }
    path = folder / "tuples.jsonl"
    path.write_text(
        json.dumps(line)
        + "\n"
        + json.dumps({**line, "implicit_prompt": "Another nail", "correct_images": ["img/a.png", "../secret.png"]})
        + "\n"
    )
    report = import_dataset(path)
    assert [(e["row"], "'..'" in e["error"]) for e in report.errors] == [(2, True)]

    path.write_text(json.dumps(line) + "\n")
    assert import_dataset(path).ok
    c = sha((folder / "img" / "c.png").read_bytes())
    assert pair_shas() == {(sha((folder / "img" / f"{n}.png").read_bytes()), c) for n in ("a", "b")}
    nail = PromptTuple.objects.get()
    assert (nail.implicit_paraphrases, nail.scene_scoring, nail.real_scoring) == (
        ["Rain, nail"],
        "A nail is visible.",
        "3: rust; 0: shiny",
    )


# --- 2. rubrics ---------------------------------------------------------------------------------------------


def test_the_rubrics_are_stored_on_the_tuple_and_bounded(tmp_path):
    rows = [
        published_row(
            "A nail in the rain",
            scene_scoring="The image shows a nail outdoors.",
            real_scoring="3: rust-brown all over; 0: shiny grey",
        )
    ]
    assert import_dataset(write(tmp_path / "test_S.parquet", rows, TEST_SCHEMA)).ok
    nail = PromptTuple.objects.get()
    assert (nail.scene_scoring, nail.real_scoring) == (
        "The image shows a nail outdoors.",
        "3: rust-brown all over; 0: shiny grey",
    )

    huge = [published_row("A chain in the rain", real_scoring="x" * 20_001)]
    report = import_dataset(write(tmp_path / "big.parquet", huge, TEST_SCHEMA))
    assert report.errors[0]["row"] == 1
    assert report.errors[0]["error"] == "real_scoring is 20001 characters long; the limit is 20000"
    assert PromptTuple.objects.count() == 1


def test_paraphrase_and_image_lists_are_bounded(tmp_path):
    many = {
        "implicit_prompt": [f"A nail, wording {i}" for i in range(101)],
        "explicit_prompt": ["A rusty nail"],
        "superficial_prompt": ["A shiny nail"],
        "explicit_image": images(png_bytes()),
        "superficial_image": images(jpeg_bytes()),
        "category": "Rust",
        "law": "",
    }
    crowd = {**many, "implicit_prompt": ["A chain in the rain"], "explicit_image": images(*[b"x"] * 101)}
    long = {**many, "implicit_prompt": ["A bolt in the rain", "y" * 2001]}
    report = import_dataset(write_train(tmp_path / "train.parquet", [many, crowd, long]))
    assert [e["error"] for e in report.errors] == [
        "implicit_prompt has 101 wordings; the limit is 100",
        "explicit_image holds 101 images; the limit is 100",
        "implicit_prompt is 2001 characters long; the limit is 2000",
    ]
    assert not PromptTuple.objects.exists()


# --- 3. decisions and labels ------------------------------------------------------------------------------


def test_published_rows_get_imported_decisions_with_their_provenance(tmp_path):
    root = tmp_path / "Science-T2I-S"
    rows = [published_row("A nail in the rain"), published_row("A cork in water", task="Buoyancy")]
    write(root / "data" / "test-00000-of-00001.parquet", rows, TEST_SCHEMA)

    report = import_dataset(root)

    assert report.ok, report.errors
    assert report.decisions == {"recorded": 2, "unchanged": 0, "kept": 0}
    assert report.as_dict()["options"]["decisions"] == "import"
    nail = Pair.objects.get(tuple__implicit_prompt="A nail in the rain")
    assert (nail.status, nail.consensus.outcome, nail.consensus.label) == ("complete", "imported", "expected")
    assert nail.consensus.provenance == {
        "source": "data/test-00000-of-00001.parquet",
        "row": 1,
        "split": "test_S",
        "dataset": "published",
    }
    assert set(
        AuditEvent.objects.filter(target_type="pair", target_id=str(nail.pk)).values_list("action", flat=True)
    ) == {"pair.created", "consensus.changed", "pair.closed"}

    again = import_dataset(root)
    assert again.decisions == {"recorded": 0, "unchanged": 2, "kept": 0}


def test_open_for_annotation_imports_pairs_open_without_a_decision(tmp_path):
    path = write(tmp_path / "test_S.parquet", [published_row("A nail in the rain")], TEST_SCHEMA)
    dry = import_dataset(path, decisions="open", dry_run=True)
    report = import_dataset(path, decisions="open")
    assert report.ok and report.decisions == dry.decisions == {"recorded": 0, "unchanged": 0, "kept": 0}
    assert Pair.objects.get().status == "open" and not Consensus.objects.exists()
    with pytest.raises(importing.ImportRefused, match="decisions must be one of import, open"):
        import_dataset(path, decisions="maybe")


def test_an_export_row_labelled_other_comes_back_in_the_catalogue_orientation(tmp_path):
    judged_correct, other = png_bytes(), jpeg_bytes()
    rows = [
        export_row(
            "A nail in the rain", label="other", explicit_image=images(judged_correct), superficial_image=images(other)
        ),
        export_row("A chain in the rain", pair_id=12, tuple_id=8),
    ]
    path = write(tmp_path / "export" / "test_S-00000-of-00001.parquet", rows, EXPORT_SCHEMA)

    report = import_dataset(path.parent)

    assert report.ok, report.errors
    pair = Pair.objects.get(tuple__implicit_prompt="A nail in the rain")
    # the catalogue's expected image was the row's superficial one; the experts chose the other
    assert (stored_bytes(pair.image_correct), stored_bytes(pair.image_wrong)) == (other, judged_correct)
    assert (pair.image_correct.kind, pair.image_wrong.kind) == ("explicit", "superficial")
    assert (pair.consensus.outcome, pair.consensus.label) == ("imported", "other")
    assert pair.consensus.provenance == {
        "source": "test_S-00000-of-00001.parquet",
        "row": 1,
        "split": "test_S",
        "dataset": "platform export",
        "outcome": "reversed",
        "agreement": 2 / 3,
        "n_judgements": 3,
        "label": "other",
    }
    assert pair.tuple.provenance["tuple_id"] == 7
    assert Pair.objects.get(tuple__implicit_prompt="A chain in the rain").consensus.label == "expected"
    assert report.decisions == {"recorded": 2, "unchanged": 0, "kept": 0}


def test_the_scene_column_is_kept_and_the_split_decides_without_it(tmp_path):
    rows = [
        export_row("A nail in a busy street in the rain", scene="complex"),
        export_row("A chain in the rain", pair_id=12, scene=""),
    ]
    assert import_dataset(write(tmp_path / "train-00000-of-00001.parquet", rows, EXPORT_SCHEMA)).ok
    assert dict(PromptTuple.objects.values_list("implicit_prompt", "scene")) == {
        "A nail in a busy street in the rain": "complex",
        "A chain in the rain": "simple",
    }
    bad = write(tmp_path / "bad.parquet", [export_row("A bolt", scene="cosmic")], EXPORT_SCHEMA)
    assert "scene must be one of simple, complex" in import_dataset(bad).errors[0]["error"]


def test_bad_label_or_decision_columns_are_row_errors(tmp_path):
    rows = [
        export_row("A nail", label="maybe"),
        export_row("A chain", agreement=5.0),
        export_row("A bolt", n_judgements=-1),
        export_row("A gate", consensus="x" * 100),
    ]
    report = import_dataset(write(tmp_path / "t.parquet", rows, EXPORT_SCHEMA))
    assert [e["error"].split(",")[0].split(" must")[0] for e in report.errors] == [
        "label",
        "agreement",
        "n_judgements",
        "consensus",
    ]
    assert not PromptTuple.objects.exists()


def test_the_same_pair_with_two_labels_in_one_input_is_an_error(tmp_path):
    a, b = png_bytes(), jpeg_bytes()
    rows = [
        export_row("A nail", explicit_image=images(a), superficial_image=images(b)),
        export_row("A nail", label="other", explicit_image=images(b), superficial_image=images(a)),
    ]
    report = import_dataset(write(tmp_path / "t.parquet", rows, EXPORT_SCHEMA))
    assert [e["row"] for e in report.errors] == [2]
    assert (
        "contradicts t.parquet row 1: the same pair is labelled expected there, other here" in report.errors[0]["error"]
    )


def _stored_row(pair: Pair, **extra) -> dict:
    """A published test row holding the stored pair's tuple and images (explicit = its image_correct)."""
    t = pair.tuple
    return {
        **published_row(t.implicit_prompt, task=t.task.code),
        "explicit_prompt": t.explicit_prompt,
        "superficial_prompt": t.superficial_prompt,
        "explicit_image": images(stored_bytes(pair.image_correct)),
        "superficial_image": images(stored_bytes(pair.image_wrong)),
        **extra,
    }


def test_pairs_decided_here_keep_their_decision_and_the_dry_run_counts_it(tmp_path, admin_user):
    from curation.services import adjudication
    from tests.support.judging import judged

    confirmed = judged("other", "other", "other")  # judgements at k: reversed here
    adjudicated = judged("expected", k=1)
    adjudication.adjudicate(admin_user, adjudicated.pk, "neither")
    pending = judged("other")  # below k: the imported decision takes over
    path = write(tmp_path / "test_S.parquet", [_stored_row(p) for p in (confirmed, adjudicated, pending)], TEST_SCHEMA)
    before = {p.pk: (p.consensus.outcome, p.consensus.label) for p in (confirmed, adjudicated)}

    dry = import_dataset(path, dry_run=True)
    assert dry.ok, dry.errors
    assert dry.decisions == {"recorded": 1, "unchanged": 0, "kept": 2}
    assert Consensus.objects.get(pair=pending).outcome == "pending" and Pair.objects.get(pk=pending.pk).status == "open"

    report = import_dataset(path)

    assert report.decisions == dry.decisions and report.pairs == {"created": 0, "skipped": 3}
    assert {
        p: (c.outcome, c.label)
        for p, c in ((c.pair_id, c) for c in Consensus.objects.filter(pair__in=[confirmed, adjudicated]))
    } == before
    imported = Consensus.objects.get(pair=pending)
    assert (imported.outcome, imported.label, imported.n_judgements) == ("imported", "expected", 1)
    assert Pair.objects.get(pk=pending.pk).status == "complete"


def test_a_stored_pair_the_experts_reversed_takes_the_decision_of_a_published_row_the_other_way_round(tmp_path):
    from tests.support.judging import judged

    reversed_pair = judged("other", "other", "other")
    row = _stored_row(
        reversed_pair,
        explicit_image=images(stored_bytes(reversed_pair.image_wrong)),
        superficial_image=images(stored_bytes(reversed_pair.image_correct)),
    )
    report = import_dataset(write(tmp_path / "test_S.parquet", [row], TEST_SCHEMA))
    assert report.ok, report.errors
    assert (report.pairs, report.decisions) == (
        {"created": 0, "skipped": 1},
        {"recorded": 0, "unchanged": 0, "kept": 1},
    )
    flipped = export_row(
        reversed_pair.tuple.implicit_prompt,
        label="other",
        explicit_image=row["superficial_image"],
        superficial_image=row["explicit_image"],
    )
    clash = import_dataset(write(tmp_path / "clash.parquet", [flipped], EXPORT_SCHEMA))
    assert "contradicts stored pair" in clash.errors[0]["error"]


# --- 4. the published layout --------------------------------------------------------------------------------


def published_layout(root: Path) -> Path:
    row = {
        "implicit_prompt": ["A nail in the rain for weeks", "Rain on a nail"],
        "explicit_prompt": ["A rusty nail"],
        "superficial_prompt": ["A shiny nail"],
        "explicit_image": images(png_bytes(), png_bytes()),
        "superficial_image": images(jpeg_bytes()),
        "category": "Chemistry",
        "law": "Rust",
        "scene_scoring": "a nail",
        "real_scoring": "rust",
    }
    write(root / "Science-T2I-Trainset" / "data" / "train-00000-of-00001.parquet", [row], TRAIN_RUBRIC_SCHEMA)
    write(
        root / "Science-T2I-Trainset" / "data" / "validation-00000-of-00001.parquet",
        [{**row, "implicit_prompt": ["A chain in the rain for weeks"]}],
        TRAIN_RUBRIC_SCHEMA,
    )
    write(
        root / "Science-T2I-S" / "data" / "test-00000-of-00001.parquet",
        [published_row("A cork in water", "BU")],
        TEST_SCHEMA,
    )
    write(
        root / "Science-T2I-C" / "data" / "test-00000-of-00001.parquet",
        [published_row("A cork in a crowded harbour", "Buoyancy")],
        TEST_SCHEMA,
    )
    return root


def test_the_published_layout_imports_together_and_each_folder_alone(tmp_path):
    root = published_layout(tmp_path / "hub")

    report = import_dataset(root)

    assert report.ok, report.errors
    assert (report.rows, report.pairs["created"]) == (4, 6)  # 2 + 2 (two explicit images) + 1 + 1
    tuples = {t.implicit_prompt: (t.task.code, t.scene, t.provenance["split"]) for t in PromptTuple.objects.all()}
    assert tuples == {
        "A nail in the rain for weeks": ("RU", "simple", "train"),
        "A chain in the rain for weeks": ("RU", "simple", "validation"),
        "A cork in water": ("BU", "simple", "test_S"),
        "A cork in a crowded harbour": ("BU", "complex", "test_C"),
    }
    sources = {c.provenance["source"] for c in Consensus.objects.all()}
    assert sources == {
        "Science-T2I-Trainset/data/train-00000-of-00001.parquet",
        "Science-T2I-Trainset/data/validation-00000-of-00001.parquet",
        "Science-T2I-S/data/test-00000-of-00001.parquet",
        "Science-T2I-C/data/test-00000-of-00001.parquet",
    }
    for folder in ("Science-T2I-Trainset", "Science-T2I-S", "Science-T2I-C"):
        alone = import_dataset(root / folder)
        assert alone.ok and alone.pairs["created"] == 0 and alone.tuples["created"] == 0, folder
    assert import_dataset(root / "Science-T2I-C" / "data" / "test-00000-of-00001.parquet").tuples["skipped"] == 1


# --- both writers and the dry run agree ---------------------------------------------------------------------


def _state() -> dict:
    """Everything an import writes, without ids."""

    def pair_key(pair):
        return (pair.tuple.implicit_prompt, pair.image_correct.sha256, pair.image_wrong.sha256)

    pairs = Pair.objects.select_related("tuple", "image_correct", "image_wrong")
    events = {}
    for event in AuditEvent.objects.exclude(action="dataset.imported"):
        after = {k: v for k, v in (event.after or {}).items() if k not in ("tuple", "image_correct", "image_wrong")}
        before = {k: v for k, v in (event.before or {}).items() if k not in ("tuple", "image_correct", "image_wrong")}
        key = (event.action, event.target_type, json.dumps(before, sort_keys=True), json.dumps(after, sort_keys=True))
        events[key] = events.get(key, 0) + 1
    return {
        "tuples": sorted(
            (
                t.implicit_prompt,
                t.task_id,
                t.scene,
                t.subject,
                t.source,
                json.dumps(t.provenance),
                t.implicit_paraphrases,
                t.explicit_paraphrases,
                t.superficial_paraphrases,
                t.scene_scoring,
                t.real_scoring,
            )
            for t in PromptTuple.objects.all()
        ),
        "images": sorted(Image.objects.values_list("sha256", "kind", "width", "height", "format", "size_bytes")),
        "pairs": sorted((*pair_key(p), p.status, p.k) for p in pairs),
        "consensus": sorted(
            (
                *pair_key(c.pair),
                c.outcome,
                c.label,
                c.agreement,
                c.n_judgements,
                json.dumps(c.counts, sort_keys=True),
                json.dumps(c.provenance, sort_keys=True),
            )
            for c in Consensus.objects.select_related("pair__tuple", "pair__image_correct", "pair__image_wrong")
        ),
        "events": events,
    }


def _wipe() -> None:
    Consensus.objects.all().delete()
    Pair.objects.all().delete()
    Image.objects.all().delete()
    PromptTuple.objects.all().delete()
    AuditEvent.objects.all().delete()


def test_the_bulk_writer_the_per_row_writer_and_the_dry_run_agree(tmp_path, monkeypatch):
    from curation.services.importing import orchestration
    from curation.services.importing.writing import Writer

    rows = [
        export_row("A nail in the rain", label="other"),
        export_row("A chain in the rain", pair_id=12),
        export_row(
            "A gate in the rain",
            pair_id=13,
            scene="complex",
            label="both",
            explicit_image=images(png_bytes(), png_bytes()),
        ),
    ]
    path = write(tmp_path / "train-00000-of-00001.parquet", rows, EXPORT_SCHEMA)
    dry = import_dataset(path, dry_run=True, batch_size=2)
    bulk = import_dataset(path, batch_size=2)
    assert bulk.ok, bulk.errors
    written = _state()
    _wipe()
    monkeypatch.setattr(
        orchestration,
        "BulkWriter",
        lambda report, validated, checked, normalised: Writer(report, dry_run=False, normalised=normalised),
    )
    per_row = import_dataset(path, batch_size=2)

    assert _state() == written
    for name in ("tuples", "images", "pairs", "decisions"):
        assert getattr(per_row, name) == getattr(bulk, name) == getattr(dry, name), name
    assert bulk.decisions == {"recorded": 4, "unchanged": 0, "kept": 0}
    assert len(written["consensus"]) == 4 and {c[4] for c in written["consensus"]} == {"expected", "other", "both"}

"""Tuple readers and the parquet writer, on small files with real PNG bytes."""

import io
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from science_t2i.format import (
    DataError,
    ImageRef,
    TupleRecord,
    parquet_split,
    read_grouping,
    read_jsonl,
    read_parquet_dir,
    task_code,
    write_parquet,
)

IMAGE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def png(colour, size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def pixel(image: Image.Image):
    return image.convert("RGB").getpixel((0, 0))


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def tuple_line(**changes):
    line = {
        "implicit_prompt": "An unripe mango.",
        "explicit_prompt": "A hard green mango.",
        "superficial_prompt": "A ripe yellow mango.",
        "correct_image": "img/green.png",
        "wrong_image": "img/yellow.png",
        "task": "RI",
        "subject": "mango",
        "split": "test",
    }
    return line | changes


@pytest.fixture
def jsonl_dir(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "green.png").write_bytes(png("green"))
    (tmp_path / "img" / "yellow.png").write_bytes(png("yellow"))
    return tmp_path


def science_t2i_table(rows):
    """A table shaped like the published dataset (train split: lists of paraphrases)."""
    schema = pa.schema(
        [
            ("implicit_prompt", pa.list_(pa.string())),
            ("explicit_prompt", pa.list_(pa.string())),
            ("superficial_prompt", pa.list_(pa.string())),
            ("explicit_image", IMAGE),
            ("superficial_image", IMAGE),
            ("category", pa.string()),
            ("law", pa.string()),
            ("scene_scoring", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def published_row(category="Rust", n_images=2, **changes):
    row = {
        "implicit_prompt": ["A nail left in the rain.", "A nail after months outdoors."],
        "explicit_prompt": ["A nail with orange rust."],
        "superficial_prompt": ["A shiny nail."],
        "explicit_image": [{"bytes": png((200, 90, 10 + i)), "path": f"e{i}.png"} for i in range(n_images)],
        "superficial_image": [{"bytes": png((180, 180, 190 + i)), "path": None} for i in range(n_images)],
        "category": category,
        "law": "oxidation",
        "scene_scoring": "rubric",
    }
    return row | changes


# --- JSONL -------------------------------------------------------------------------------------------


def test_it_reads_jsonl_tuples_with_lazy_images(jsonl_dir):
    path = write_jsonl(jsonl_dir / "tuples.jsonl", [tuple_line(), "", tuple_line(task="Buoyancy", extra_key=1)])

    first, second = read_jsonl(path)
    assert (first.task, first.discipline, first.kind, first.subject, first.split) == (
        "RI",
        "biology",
        "CT",
        "mango",
        "test",
    )
    assert isinstance(first.correct_image, ImageRef)
    correct, wrong = first.images()
    assert pixel(correct) == (0, 128, 0) and pixel(wrong) == (255, 255, 0)
    assert (second.task, second.kind, second.extra) == ("BU", "ST", {"extra_key": 1})


def test_it_resolves_relative_paths_against_the_file_and_allows_absolute_ones(jsonl_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "red.png").write_bytes(png("red"))
    (jsonl_dir / "lists").mkdir()
    path = write_jsonl(
        jsonl_dir / "lists" / "t.jsonl",
        [tuple_line(correct_image=str(elsewhere / "red.png"), wrong_image="../img/yellow.png")],
    )

    (record,) = read_jsonl(path)
    assert [pixel(i) for i in record.images()] == [(255, 0, 0), (255, 255, 0)]


def test_it_keeps_a_task_it_does_not_know_and_makes_explicit_prompts_optional(jsonl_dir):
    line = {
        k: v
        for k, v in tuple_line(task="XY", discipline="geology", kind="ST").items()
        if k not in ("explicit_prompt", "superficial_prompt")
    }

    (record,) = read_jsonl(write_jsonl(jsonl_dir / "t.jsonl", [line]))
    assert (record.task, record.discipline, record.kind) == ("XY", "geology", "ST")
    assert record.explicit_prompt == record.superficial_prompt == ""


def test_it_reports_every_bad_line_with_its_number(jsonl_dir):
    path = write_jsonl(
        jsonl_dir / "bad.jsonl",
        [
            tuple_line(),
            "{not json",
            tuple_line(wrong_image="img/missing.png"),
            "[1, 2]",
            tuple_line(implicit_prompt=""),
            tuple_line(kind="XX"),
            tuple_line(subject=3),
        ],
    )

    with pytest.raises(DataError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message.startswith("6 bad line(s)")
    for expected in (
        ":2: not JSON",
        ":3: wrong_image 'img/missing.png' not found",
        ":4: expected a JSON object",
        ":5: missing implicit_prompt",
        ":6: kind 'XX'",
        ":7: subject must be a string",
    ):
        assert expected in message
    assert ":1:" not in message


def test_records_pickle_for_dataloader_workers(jsonl_dir):
    (record,) = read_jsonl(write_jsonl(jsonl_dir / "t.jsonl", [tuple_line()]))

    assert pixel(pickle.loads(pickle.dumps(record)).images()[0]) == (0, 128, 0)


# --- parquet ------------------------------------------------------------------------------------------


def test_it_reads_the_published_train_shape_one_record_per_image_pair(tmp_path):
    pq.write_table(
        science_t2i_table([published_row(), published_row("flame_reaction", 1)]),
        tmp_path / "train-00000-of-00001.parquet",
    )

    records = list(read_parquet_dir(tmp_path))
    assert len(records) == 3
    first = records[0]
    assert first.implicit_prompt == "A nail left in the rain."
    assert first.extra["implicit_prompts"] == ["A nail left in the rain.", "A nail after months outdoors."]
    assert (first.explicit_prompt, first.superficial_prompt) == ("A nail with orange rust.", "A shiny nail.")
    assert (first.task, first.discipline, first.kind, first.split) == ("RU", "chemistry", "CT", "train")
    assert first.extra["law"] == "oxidation" and first.extra["scene_scoring"] == "rubric"
    assert [r.extra["image_index"] for r in records] == [0, 1, 0]
    assert [pixel(i) for i in records[1].images()] == [(200, 90, 11), (180, 180, 191)]
    assert records[2].task == "FR"


def test_it_reads_string_prompts_and_filters_splits_by_file_name(tmp_path):
    rows = [
        {
            "implicit_prompt": "Oil poured into water.",
            "explicit_prompt": "Oil floats.",
            "superficial_prompt": "Oil mixes.",
            "explicit_image": [{"bytes": png("black"), "path": None}],
            "superficial_image": [{"bytes": png("white"), "path": None}],
            "category": "IM",
            "law": "density",
        }
    ]
    for name in ("test_S-00000-of-00001.parquet", "test_C-00000-of-00001.parquet"):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / name)

    (record,) = read_parquet_dir(tmp_path, split="test_C")
    assert (record.implicit_prompt, record.task, record.split) == ("Oil poured into water.", "IM", "test_C")
    assert "implicit_prompts" not in record.extra
    with pytest.raises(DataError, match=r"split 'test_X' \(splits found: test_C, test_S\)"):
        read_parquet_dir(tmp_path, split="test_X")


def test_it_keeps_an_unknown_category_in_extra(tmp_path):
    pq.write_table(science_t2i_table([published_row("Photosynthesis", 1)]), tmp_path / "x.parquet")

    (record,) = read_parquet_dir(tmp_path / "x.parquet")
    assert (record.task, record.discipline, record.extra["category"], record.split) == ("", "", "Photosynthesis", "x")


def test_it_streams_in_batches(tmp_path):
    pq.write_table(science_t2i_table([published_row(n_images=1)] * 5), tmp_path / "train.parquet", row_group_size=2)

    records = read_parquet_dir(tmp_path, batch_size=2)
    assert not isinstance(records, list)
    assert next(records).split == "train"
    assert len(list(records)) == 4


def test_it_reads_images_stored_by_path_next_to_the_file(tmp_path):
    (tmp_path / "test_S").mkdir()
    (tmp_path / "test_S" / "a.png").write_bytes(png("blue"))
    row = published_row(n_images=1, explicit_image=[{"bytes": None, "path": "a.png"}])
    pq.write_table(science_t2i_table([row]), tmp_path / "test_S" / "part.parquet")

    (record,) = read_parquet_dir(tmp_path)
    assert record.split == "test_S" and pixel(record.images()[0]) == (0, 0, 255)


def test_it_names_file_and_row_of_a_bad_row(tmp_path):
    rows = [published_row(n_images=1), published_row(n_images=1, superficial_image=[])]
    pq.write_table(science_t2i_table(rows), tmp_path / "train.parquet")

    with pytest.raises(DataError, match=r"train.parquet: row 1: needs at least one"):
        list(read_parquet_dir(tmp_path))


def test_it_refuses_files_without_the_science_t2i_columns(tmp_path):
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "other.parquet")

    with pytest.raises(DataError, match="missing column.*implicit_prompt, explicit_image, superficial_image"):
        read_parquet_dir(tmp_path)
    with pytest.raises(DataError, match="no such parquet file"):
        read_parquet_dir(tmp_path / "nope")


def test_write_parquet_round_trips_records_with_their_original_image_bytes(tmp_path, jsonl_dir):
    on_disk = read_jsonl(write_jsonl(jsonl_dir / "t.jsonl", [tuple_line(law="ripening")]))[0]
    in_memory = TupleRecord(
        "A candle in a sealed jar.",
        "The flame is out.",
        "The flame burns.",
        Image.new("RGB", (5, 5), "gray"),
        lambda: Image.new("RGB", (5, 5), "orange"),
        task="XY",
    )

    assert (
        write_parquet(iter([on_disk, in_memory]), tmp_path / "out" / "test_S-00000-of-00001.parquet", batch_size=1) == 2
    )
    first, second = read_parquet_dir(tmp_path / "out")
    assert first.correct_image.encoded() == (jsonl_dir / "img" / "green.png").read_bytes()
    assert (first.task, first.extra["category"], first.extra["law"], first.split) == (
        "RI",
        "Ripeness",
        "ripening",
        "test_S",
    )
    assert [pixel(i) for i in second.images()] == [(128, 128, 128), (255, 165, 0)]
    assert (second.task, second.extra["category"]) == ("", "XY")
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "test_S-00000-of-00001.parquet"]


def test_write_parquet_declares_the_datasets_image_features(tmp_path):
    write_parquet([], tmp_path / "empty.parquet")

    schema = pq.read_schema(tmp_path / "empty.parquet")
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["explicit_image"] == [{"_type": "Image"}]
    assert schema.field("superficial_image").type == IMAGE
    assert list(read_parquet_dir(tmp_path)) == []


@pytest.mark.parametrize(
    "value, code",
    [
        ("RU", "RU"),
        ("rust", "RU"),
        ("Flame reaction", "FR"),
        ("flame_reaction", "FR"),
        ("WATERING-REQUIREMENT", "WR"),
        ("Geology", ""),
        (None, ""),
    ],
)
def test_task_code_accepts_codes_and_names(value, code):
    assert task_code(value) == code


def test_parquet_split_follows_names_then_folders(tmp_path):
    assert parquet_split(tmp_path / "data" / "train-00001-of-00004.parquet", tmp_path) == "train"
    assert parquet_split(tmp_path / "test_C" / "0.parquet", tmp_path) == "test_C"
    assert parquet_split(tmp_path / "validation.parquet", tmp_path) == "validation"


# --- the paper's reading, grouping by value, benchmark folders ------------------------------------------


def test_per_row_reading_keeps_every_paraphrase_and_every_image_of_a_row(tmp_path):
    row = published_row(n_images=2, superficial_image=[{"bytes": png((1, 2, 3 + i)), "path": None} for i in range(3)])
    pq.write_table(science_t2i_table([row]), tmp_path / "train-00000-of-00001.parquet")
    (record,) = read_parquet_dir(tmp_path, per_row=True)
    assert record.implicit_prompts == ["A nail left in the rain.", "A nail after months outdoors."]
    assert (len(record.correct_images), len(record.wrong_images)) == (2, 3)
    assert record.correct_image is record.correct_images[0]
    assert len(list(read_parquet_dir(tmp_path))) == 2, "the platform's reading: i-th with i-th"


def test_plural_prompt_columns_of_our_export_add_every_wording(tmp_path):
    row = {
        **published_row(),
        "implicit_prompt": "A nail left in the rain.",
        "implicit_prompts": ["A nail left in the rain.", "An iron nail in wet grass for a month."],
    }
    table = pa.Table.from_pylist([row])
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    (first, _) = read_parquet_dir(tmp_path)
    assert first.implicit_prompts == ["A nail left in the rain.", "An iron nail in wet grass for a month."]


@pytest.mark.parametrize(
    ("category", "law", "task", "discipline", "held"),
    [
        ("Rust", "RU", "RU", "chemistry", {"category": "task", "law": "task"}),
        ("Physics", "Buoyancy", "BU", "physics", {"category": "discipline", "law": "task"}),
        ("BU", "physics", "BU", "physics", {"category": "task", "law": "discipline"}),
        ("Biology", "photosynthesis", "", "biology", {"category": "discipline", "law": "unrecognised"}),
        ("", None, "", "", {"category": "empty", "law": "empty"}),
    ],
)
def test_category_and_law_are_read_by_value_in_either_column(category, law, task, discipline, held):
    assert read_grouping({"category": category, "law": law}) == (task, discipline, held)


def test_published_benchmark_folders_keep_test_s_and_test_c_apart(tmp_path):
    for name in ("Science-T2I-S", "Science-T2I-C"):
        (tmp_path / name / "data").mkdir(parents=True)
        row = published_row(implicit_prompt=[f"prompt of {name}"])
        pq.write_table(science_t2i_table([row]), tmp_path / name / "data" / "test-00000-of-00001.parquet")
    assert {r.implicit_prompt: r.split for r in read_parquet_dir(tmp_path, per_row=True)} == {
        "prompt of Science-T2I-S": "test_S",
        "prompt of Science-T2I-C": "test_C",
    }
    (only,) = read_parquet_dir(tmp_path / "Science-T2I-C" / "data", per_row=True)
    assert only.split == "test_C"


def test_jsonl_lines_may_list_paraphrases_and_more_images(jsonl_dir):
    line = tuple_line(implicit_prompts=["Another wording."], correct_images=["img/green.png"])
    (record,) = read_jsonl(write_jsonl(jsonl_dir / "t.jsonl", [line]))
    assert record.implicit_prompts == [record.implicit_prompt, "Another wording."]
    assert len(record.correct_images) == 1, "the first image is not repeated"

"""``python -m ml``: every command runs end to end on the tiny models and prints one JSON object."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ml.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tuples(tmp_path_factory) -> Path:
    """A JSONL file of 6 tuples (two tasks) with image files beside it."""
    folder = tmp_path_factory.mktemp("tuples")
    rows = []
    for i, (task, good, bad) in enumerate(
        [("RU", (150, 70, 30), (160, 160, 170)), ("RI", (240, 180, 20), (60, 160, 40))] * 3
    ):
        Image.new("RGB", (24, 24), good).save(folder / f"good{i}.png")
        Image.new("RGB", (24, 24), bad).save(folder / f"bad{i}.png")
        rows.append(
            {
                "implicit_prompt": f"Scene {i} after weeks",
                "explicit_prompt": "what it implies",
                "superficial_prompt": "what it says",
                "correct_image": f"good{i}.png",
                "wrong_image": f"bad{i}.png",
                "task": task,
                "subject": "object",
            }
        )
    path = folder / "tuples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_it_writes_every_tiny_model(tiny):
    assert (Path(tiny["scorer"]) / "open_clip_config.json").is_file()
    assert (Path(tiny["scorer_hf"]) / "config.json").is_file()
    assert (Path(tiny["flux"]) / "model_index.json").is_file()
    assert (Path(tiny["detector"]) / "config.json").is_file()


def test_it_scores_the_same_in_both_scorer_formats(capsys, tiny, tuples, tmp_path):
    image = str(tuples.parent / "good0.png")
    first = run(capsys, "score", "--model", tiny["scorer"], "--prompt", "a rusty nail", image)
    converted = run(capsys, "convert-scorer", "--model", tiny["scorer"], "--out", str(tmp_path / "hf"), "--to", "hf")
    second = run(capsys, "score", "--model", converted["out"], "--prompt", "a rusty nail", image)
    assert first["scores"][0]["score"] == pytest.approx(second["scores"][0]["score"], abs=1e-5)


def test_it_trains_and_evaluates_a_scorer(capsys, tiny, tuples, tmp_path):
    summary = run(
        capsys,
        "train-scorer",
        "--model",
        tiny["scorer"],
        "--train",
        str(tuples),
        "--val",
        str(tuples),
        "--out",
        str(tmp_path / "run"),
        "--total-steps",
        "2",
        "--warmup-steps",
        "1",
        "--batch-size",
        "2",
        "--eval-every",
        "1",
        "--save-format",
        "both",
    )
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["optimizer_steps"] >= 2
    report = run(capsys, "eval-scorer", "--model", str(summary["best_path"]), "--data", str(tuples))
    assert report["n"] == 6 and 0 <= report["accuracy"] <= 1
    assert set(report["by_task"]) == {"RU", "RI"}


def test_it_generates_with_full_metadata(capsys, tiny, tmp_path):
    result = run(
        capsys,
        "generate",
        "--pipeline",
        tiny["flux"],
        "--prompt",
        "an unripe mango",
        "--steps",
        "2",
        "--width",
        "16",
        "--height",
        "16",
        "--images-per-prompt",
        "2",
        "--seed",
        "7",
        "--max-sequence-length",
        "32",
        "--out",
        str(tmp_path / "gen"),
    )
    assert [row["seed"] for row in result["images"]] == [7, 8]
    assert all((tmp_path / "gen" / row["file"]).is_file() for row in result["images"])
    assert len((tmp_path / "gen" / "metadata.jsonl").read_text().splitlines()) == 2


def test_it_fine_tunes_with_sft_then_oft_and_evaluates_the_generator(capsys, tiny, tuples, tmp_path):
    common = ["--resolution", "16", "--max-sequence-length", "32"]
    sft = run(
        capsys,
        "sft",
        "--pipeline",
        tiny["flux"],
        "--data",
        str(tuples),
        "--out",
        str(tmp_path / "sft"),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        *common,
    )
    assert sft["optimizer_steps"] == 1 and sft["tuples_seen"] == 2
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"prompt": "An unripe mango.", "object": "mango"}]))
    oft = run(
        capsys,
        "oft",
        "--pipeline",
        tiny["flux"],
        "--lora",
        sft["lora_dir"],
        "--scorer",
        tiny["scorer"],
        "--detector",
        tiny["detector"],
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "oft"),
        "--max-steps",
        "1",
        "--prompts-per-step",
        "1",
        "--num-steps",
        "2",
        *common,
    )
    assert oft["optimizer_steps"] == 1
    base_file = tmp_path / "base.json"
    generation = [
        "--data",
        str(tuples),
        "--images-per-prompt",
        "1",
        "--steps",
        "2",
        "--width",
        "16",
        "--height",
        "16",
        "--max-sequence-length",
        "32",
    ]
    run(
        capsys,
        "eval-generator",
        "--pipeline",
        tiny["flux"],
        "--scorer",
        tiny["scorer"],
        "--save",
        str(base_file),
        *generation,
    )
    tuned = run(
        capsys,
        "eval-generator",
        "--pipeline",
        tiny["flux"],
        "--lora",
        oft["lora_dir"],
        "--scorer",
        tiny["scorer"],
        "--base",
        str(base_file),
        *generation,
    )
    assert {"RU", "RI", "overall"} <= set(tuned["groups"])
    assert "RI" in tuned["groups"]["RU"] and "ND" in tuned["groups"]["RU"]


def test_it_explains_every_command_and_reports_bad_input(capsys):
    proc = subprocess.run([sys.executable, "-m", "ml", "--help"], cwd=ROOT, capture_output=True, text=True)
    for name in (
        "make-tiny",
        "score",
        "convert-scorer",
        "train-scorer",
        "eval-scorer",
        "generate",
        "sft",
        "oft",
        "eval-generator",
        "learnability",
    ):
        assert name in proc.stdout
    assert main(["eval-scorer", "--model", "/nonexistent", "--data", "/nonexistent.jsonl", "--json"]) != 0


def test_only_rank_zero_prints_the_result_under_a_multi_process_launch(capsys, monkeypatch):
    from ml.cli import emit

    monkeypatch.setenv("RANK", "1")
    emit({"best_step": 2}, as_json=True)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    emit({"best_step": 2}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"best_step": 2}


def test_eval_scorer_takes_element_0_of_each_image_list_as_the_published_evaluation_does(capsys, tiny, tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from science_t2i.format import schema_with_features, science_t2i_fields

    def png(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    row = {
        "implicit_prompt": "A stone dropped into a pond.",
        "explicit_prompt": "",
        "superficial_prompt": "",
        "explicit_image": [png((10, 10, 10)), png((20, 20, 20))],
        "superficial_image": [png((200, 0, 0)), png((0, 200, 0))],
        "scene_scoring": "",
        "real_scoring": "",
        "category": "Physics",
        "law": "Buoyancy",
    }
    folder = tmp_path / "Science-T2I-S" / "data"
    folder.mkdir(parents=True)
    schema = schema_with_features(science_t2i_fields())
    pq.write_table(pa.Table.from_pylist([row], schema=schema), folder / "test-00000-of-00001.parquet")
    report = run(capsys, "eval-scorer", "--model", tiny["scorer"], "--data", str(folder.parent))
    assert report["n"] == 1 and set(report["by_task"]) == {"BU"} and set(report["by_discipline"]) == {"physics"}
    every = run(capsys, "eval-scorer", "--model", tiny["scorer"], "--data", str(folder.parent), "--every-image-pair")
    assert every["n"] == 2

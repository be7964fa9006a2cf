"""``python -m ml train-scorer|sft|oft --recipe paper|platform`` end to end on the tiny models."""

import json

import pytest
import torch
from PIL import Image

from ml import cli
from ml.cli import main
from ml.core import recipes


def run(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tuples(tmp_path_factory):
    """4 tuples of 16 px images, each with two paraphrases of every prompt and two images of each side."""
    folder = tmp_path_factory.mktemp("tuples")
    rows = []
    for i in range(4):
        for side, colour in (("good", (150, 70, 30 + i)), ("bad", (60, 160, 40 + i))):
            for k in range(2):
                Image.new("RGB", (16, 16), tuple(c + 9 * k for c in colour)).save(folder / f"{side}{i}-{k}.png")
        rows.append(
            {
                "implicit_prompt": f"Scene {i} after weeks",
                "implicit_prompts": [f"Scene {i}, weeks later"],
                "explicit_prompt": "what it implies",
                "explicit_prompts": ["what it means"],
                "superficial_prompt": "what it says",
                "superficial_prompts": ["what it reads"],
                "correct_image": f"good{i}-0.png",
                "correct_images": [f"good{i}-1.png"],
                "wrong_image": f"bad{i}-0.png",
                "wrong_images": [f"bad{i}-1.png"],
                "task": "RU",
            }
        )
    path = folder / "tuples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def recipe_values(config: dict, table: dict) -> dict:
    return {name: config[name] for name in table}


@pytest.mark.parametrize("recipe", ["platform", "paper"])
def test_both_recipes_train_a_scorer(capsys, tiny, tuples, tmp_path, monkeypatch, recipe):
    reads = []
    load = cli.load_records
    monkeypatch.setattr(cli, "load_records", lambda *a, **k: reads.append(k.get("per_row", False)) or load(*a, **k))
    out = tmp_path / recipe
    summary = run(
        capsys,
        "train-scorer",
        "--recipe",
        recipe,
        "--model",
        tiny["scorer"],
        "--train",
        str(tuples),
        "--val",
        str(tuples),
        "--out",
        str(out),
        "--total-steps",
        "3",
        "--warmup-steps",
        "2",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--lr",
        "1e-4",
        "--save-format",
        "open_clip",
    )
    assert summary["optimizer_steps"] == 3 and summary["tuples_seen"] == 6
    config = json.loads((out / "config.json").read_text())
    expected = {name: getattr(point, recipe) for name, point in recipes.SCORER.items()}
    assert recipe_values(config, recipes.SCORER) == {**expected, "batch_size": 2, "grad_accum": 1, "effective_batch": 0}
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    if recipe == "paper":  # log warmup over 2 steps, one step behind: 0, ln 1 / ln 2 = 0, ln 2 / ln 2 = 1
        assert lrs == pytest.approx([0.0, 0.0, 1e-4])
        assert reads == [True, False]  # the training parquet read one row per tuple, for the random draws
    else:  # linear: 0, 1/2, then (3 - 2) / (3 - 2)
        assert lrs == pytest.approx([0.0, 5e-5, 1e-4])
        assert reads == [False, False]


@pytest.mark.parametrize("recipe", ["platform", "paper"])
def test_both_recipes_fine_tune_flux_with_sft_then_oft(capsys, tiny, tuples, tmp_path, recipe):
    common = ["--recipe", recipe, "--max-sequence-length", "16", "--no-gradient-checkpointing"]
    steps = ["--epochs", "1"] if recipe == "paper" else ["--max-steps", "2"]
    sft = run(
        capsys,
        "sft",
        "--pipeline",
        tiny["flux"],
        "--data",
        str(tuples),
        "--out",
        str(tmp_path / "sft"),
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--resolution",
        "16",
        *steps,
        *common,
    )
    assert (sft["optimizer_steps"], sft["tuples_seen"]) == (2, 4)  # 1 epoch of 4 tuples = 2 steps of 2
    trained = torch.load(tmp_path / "sft" / "checkpoint.pt", weights_only=True)["config"]
    expected = {name: getattr(point, recipe) for name, point in recipes.SFT.items()}
    assert recipe_values(trained, recipes.SFT) == {
        **expected,
        **({"max_steps": 2, "epochs": 1} if recipe == "paper" else {"max_steps": 2, "epochs": 0}),
    }

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
        "--resolution",
        "32",
        *common,
    )
    assert oft["optimizer_steps"] == 1
    trained = torch.load(tmp_path / "oft" / "checkpoint.pt", weights_only=True)["config"]
    expected = {name: getattr(point, recipe) for name, point in recipes.OFT.items()}
    assert recipe_values(trained, recipes.OFT) == {**expected, "max_steps": 1, "prompts_per_step": 1}
    (line,) = (tmp_path / "oft" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["loss"] == pytest.approx(0.6931472)  # log 2: the policy starts as its reference


def test_a_recipe_option_outside_its_choices_is_refused(capsys, tiny, tuples, tmp_path):
    with pytest.raises(SystemExit):
        main(
            [
                "train-scorer",
                "--recipe",
                "research",
                "--model",
                tiny["scorer"],
                "--train",
                str(tuples),
                "--val",
                str(tuples),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert "invalid choice: 'research'" in capsys.readouterr().err

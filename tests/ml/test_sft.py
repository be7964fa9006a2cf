"""LoRA SFT on the tiny FLUX: what trains, what is saved, exact resume, explicit accumulation."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ml.core.generate import generate, load_pipeline
from ml.core.sft import SFTConfig, train_sft
from ml.core.tiny_flux import make_tiny_flux
from science_t2i.format import TupleRecord

# 16 px images and 16 T5 tokens keep a step to milliseconds; the recipe's optimiser settings otherwise.
TINY = {"resolution": 16, "max_sequence_length": 16, "batch_size": 2, "grad_accum": 2, "checkpoint_every": 1}


def record(i: int) -> TupleRecord:
    colour = (60 * i % 256, 200, 30)
    return TupleRecord(
        implicit_prompt=f"An unripe mango number {i}, simple and realistic.",
        explicit_prompt="A hard, green mango.",
        superficial_prompt="A ripe yellow-orange mango.",
        correct_image=lambda: Image.new("RGB", (24, 16), colour),  # lazy, as records from files are
        wrong_image=Image.new("RGB", (16, 16), (250, 160, 0)),
        task="RI",
    )


RECORDS = [record(i) for i in range(3)]


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("flux"))


def metrics(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint(out_dir):
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)


def test_it_trains_only_the_lora_and_logs_tuples_and_steps_apart(flux_dir, tmp_path):
    seen = []
    result = train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=2, **TINY), on_step=seen.append)
    assert (result.optimizer_steps, result.tuples_seen) == (2, 8)
    rows = metrics(tmp_path)
    assert rows == seen
    assert [(r["optimizer_step"], r["tuples_seen"]) for r in rows] == [(1, 4), (2, 8)]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows)

    trained = checkpoint(tmp_path)["trainable"]
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)
    assert len(trained) == 2 * (4 + 3)  # A and B: to_q/k/v/out.0 in the double block, to_q/k/v in the single
    assert any(value.abs().sum() > 0 for name, value in trained.items() if ".lora_B." in name)  # moved off 0
    assert all(value.dtype == torch.float32 for value in trained.values())


def test_the_saved_lora_loads_into_the_pipeline_and_changes_the_output(flux_dir, tmp_path):
    config = SFTConfig(max_steps=3, lr=1e-2, **TINY)
    result = train_sft(flux_dir, RECORDS, tmp_path, config)
    assert (result.lora_dir / "pytorch_lora_weights.safetensors").exists()

    settings = {
        "seeds": [5],
        "steps": 2,
        "guidance": 3.5,
        "width": 32,
        "height": 32,
        "batch_size": 1,
        "max_sequence_length": 16,
    }
    base = load_pipeline(flux_dir)
    before = generate(base, [RECORDS[0].implicit_prompt], **settings)[0]
    base.load_lora_weights(result.lora_dir)
    after = generate(base, [RECORDS[0].implicit_prompt], **settings)[0]
    assert np.abs(np.asarray(before.image, int) - np.asarray(after.image, int)).max() > 0
    base.disable_lora()  # the base weights themselves are untouched
    again = generate(base, [RECORDS[0].implicit_prompt], **settings)[0]
    assert np.array_equal(np.asarray(before.image), np.asarray(again.image))


def test_resuming_equals_an_uninterrupted_run(flux_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_sft(flux_dir, RECORDS, straight, SFTConfig(max_steps=3, **TINY))
    train_sft(flux_dir, RECORDS, resumed, SFTConfig(max_steps=1, **TINY))
    result = train_sft(flux_dir, RECORDS, resumed, SFTConfig(max_steps=3, **TINY))

    assert (result.optimizer_steps, result.tuples_seen) == (3, 12)
    a, b = checkpoint(straight), checkpoint(resumed)
    assert all(torch.equal(a["trainable"][k], b["trainable"][k]) for k in a["trainable"])
    assert torch.equal(a["generator"], b["generator"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(metrics(straight)) == strip(metrics(resumed))


def test_resuming_drops_metrics_logged_after_the_checkpoint(flux_dir, tmp_path):
    train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=2, **{**TINY, "checkpoint_every": 5}))
    assert checkpoint(tmp_path)["optimizer_steps"] == 2  # the last step always checkpoints
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"optimizer_step": 3, "tuples_seen": 12, "loss": 0.0}) + "\n")  # a crash's leftover
    train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=3, **{**TINY, "checkpoint_every": 5}))
    assert [r["optimizer_step"] for r in metrics(tmp_path)] == [1, 2, 3]
    assert metrics(tmp_path)[-1]["loss"] > 0


def test_it_refuses_to_resume_with_another_recipe_or_data(flux_dir, tmp_path):
    train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=1, **TINY))
    with pytest.raises(ValueError, match="config changed in \\['lr'\\]"):
        train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=2, lr=1e-3, **TINY))
    with pytest.raises(ValueError, match="records differ"):
        train_sft(flux_dir, RECORDS[:2], tmp_path, SFTConfig(max_steps=2, **TINY))


def test_the_loss_falls_on_a_fixed_tiny_set(flux_dir, tmp_path):
    config = SFTConfig(max_steps=24, lr=1e-2, **{**TINY, "grad_accum": 1, "checkpoint_every": 100})
    train_sft(flux_dir, RECORDS[:1], tmp_path, config)
    losses = [r["loss"] for r in metrics(tmp_path)]
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])


def test_it_trains_a_model_without_a_guidance_embedding(tmp_path):
    schnell = make_tiny_flux(tmp_path / "schnell", guidance_embeds=False)
    result = train_sft(schnell, RECORDS, tmp_path / "out", SFTConfig(max_steps=1, **TINY))
    assert result.optimizer_steps == 1 and np.isfinite(result.last_loss)


def test_it_checks_the_resolution_and_the_config(flux_dir, tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        train_sft(flux_dir, RECORDS, tmp_path, SFTConfig(max_steps=1, **{**TINY, "resolution": 18}))
    with pytest.raises(ValueError, match="unknown SFT config fields"):
        SFTConfig.from_dict({"learning_rate": 1e-4})
    with pytest.raises(ValueError, match="must be positive: \\['grad_accum'\\]"):
        SFTConfig(grad_accum=0)
    assert SFTConfig.from_dict({"lr": 1e-4}).lr == 1e-4

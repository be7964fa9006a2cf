"""``sft`` runs on the tiny FLUX: training through the supervised ``python -m ml sft``, resume from the
checkpoint of a killed worker, exactly one registered LoRA with its lineage, parameter validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from curation.services.exporting import export_version
from ml.models import ModelVersion, Run
from ml.services import registry, runs
from ml.services.runs import sft
from tests.support.generator_runs import (  # noqa: F401 (fixtures)
    SFT_TINY,
    commands,
    execute,
    start,
    tiny,
    tiny_paths,
    train_version,
    worker_died,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _killed_after_one_step(flux: Path, data: Path, run: Run) -> dict:
    """Train the run's first step in its folder, as a worker killed after it would; that step's metrics."""
    from ml.core.sft import SFTConfig, train_sft
    from science_t2i.format import read_parquet_dir

    out = runs.RunContext(run).work_dir / "sft"
    config = SFTConfig(**{**{name: run.params[name] for name in sft.SCHEMA}, "max_steps": 1})
    train_sft(flux, list(read_parquet_dir(data, split="train")), out, config)
    return json.loads((out / "metrics.jsonl").read_text())


def test_a_killed_run_resumes_from_its_checkpoint_and_registers_one_lora(admin_user, tiny, settings):
    version = train_version(admin_user)
    run = start(admin_user, "sft", {"model": tiny.base.pk, "dataset_version": version.pk, **SFT_TINY, "lr": 1e-2})
    first_step = _killed_after_one_step(tiny.paths.flux, Path(export_version(version, "parquet")["path"]), run)
    worker_died(run)

    run = execute(run)
    assert commands(run) == 1 and "resumed" in run.log_tail
    assert [m["optimizer_step"] for m in run.metrics] == [1, 2]
    assert run.metrics[0] == first_step  # not redone: the killed worker's own timing is kept
    lora = run.output_model
    assert lora.kind == "generator_lora" and lora.name == f"run-{run.pk}"
    assert Path(lora.location) == settings.ML_MODEL_ROOT / "generator_lora" / f"run-{run.pk}"
    assert (Path(lora.location) / "pytorch_lora_weights.safetensors").is_file()
    assert lora.config == run.params
    # Two decided train pairs (the rejected one is not exported), 2 per step, 2 steps.
    assert lora.metrics == {"loss": run.metrics[-1]["loss"], "optimizer_steps": 2, "tuples_seen": 4}
    lineage = registry.lineage(lora)
    assert lineage.ancestors == [tiny.base] and lineage.dataset_version == version
    assert lineage.produced_by == [run]

    # Redelivered after a crash between the copy and the registration: registered once, not retrained.
    Run.objects.filter(pk=run.pk).update(output_model=None)
    ModelVersion.objects.filter(pk=lora.pk).delete()
    worker_died(run)
    again = execute(run)
    assert commands(again) == 1
    (only,) = ModelVersion.objects.filter(kind="generator_lora")
    assert again.output_model == only and only.location == lora.location and only.parent == tiny.base

    # Redelivered after the registration: nothing new.
    worker_died(run)
    assert execute(run).output_model == only
    assert ModelVersion.objects.filter(kind="generator_lora").count() == 1

    # The registered adapter is what load_pipeline takes, and it changes the base model's images.
    from ml.core.generate import generate, load_pipeline

    options = {
        "seeds": [3],
        "steps": 2,
        "guidance": 3.5,
        "width": 16,
        "height": 16,
        "batch_size": 1,
        "max_sequence_length": 16,
    }
    before = generate(load_pipeline(tiny.paths.flux, device="cpu"), ["A rusty nail."], **options)[0].image
    after = generate(load_pipeline(tiny.paths.flux, device="cpu", lora=only.location), ["A rusty nail."], **options)[
        0
    ].image
    assert not np.array_equal(np.asarray(before), np.asarray(after))


def test_the_defaults_are_the_papers_as_in_the_trainer(admin_user, tiny):
    from ml.core.sft import SFTConfig

    config = SFTConfig()
    assert {name: spec.default for name, spec in sft.SCHEMA.items()} == {
        f.name: getattr(config, f.name) for f in dataclasses.fields(SFTConfig) if f.name != "device"
    }
    version = train_version(admin_user)
    run = start(admin_user, "sft", {"model": tiny.base.pk, "dataset_version": version.pk})
    assert run.input_model == tiny.base and run.status == Run.Status.QUEUED
    platform = {
        "max_steps": 500,
        "epochs": 0,
        "sigma_scheme": "uniform",
        "variants": "first",
        "image_resize": "cover_crop",
        "vae_latents": "mode",
    }  # today's behaviour
    assert run.params == {
        "model": tiny.base.pk,
        "dataset_version": version.pk,
        **{name: spec.default for name, spec in sft.SCHEMA.items()},
        **platform,
    }


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"max_steps": 0}, "max_steps", "give max_steps or epochs"),
        ({"max_steps": 5, "epochs": 2}, "epochs", "not both"),
        ({"recipe": "paper", "vae_latents": "mean"}, "vae_latents", "one of mode, sample"),
        ({"lr": "fast"}, "lr", "number"),
        ({"sigma_scheme": "cosine"}, "sigma_scheme", "one of uniform, logit_normal"),
        ({"gradient_checkpointing": "yes"}, "gradient_checkpointing", "true or false"),
        ({"processes": 2}, "params", "unknown parameters: processes"),
        ({"model": None}, "model", "required"),
        ({"model": 999999}, "model", "no registered model"),
        ({"model": "<scorer>"}, "model", "not a generator_base"),
        ({"model": "<lora>"}, "model", "not a generator_base"),
        ({"dataset_version": None}, "dataset_version", "required"),
        ({"dataset_version": "7"}, "dataset_version", "must be a dataset version id"),
        ({"dataset_version": 999999}, "dataset_version", "no dataset version"),
        ({"dataset_version": "<test only>"}, "dataset_version", "no decided pairs in its train split"),
    ],
)
def test_parameters_are_validated(admin_user, tiny, change, field, message):
    lora = registry.register_model(admin_user, "generator_lora", "some-lora", "/models/lora", parent=tiny.base)
    named = {
        "<scorer>": tiny.scorer.pk,
        "<lora>": lora.pk,
        "<test only>": train_version(admin_user, [("test_S", "expected")]).pk,
    }
    change = {key: named.get(value, value) if isinstance(value, str) else value for key, value in change.items()}
    params = {"model": tiny.base.pk, "dataset_version": train_version(admin_user).pk, **change}
    with pytest.raises(runs.RunParamsError) as caught:
        start(admin_user, "sft", params)
    assert message in caught.value.errors[field]
    assert not Run.objects.exists()


PAPER = {
    "recipe": "paper",
    "variants": "random",
    "image_resize": "shorter_side",
    "vae_latents": "sample",
    "sigma_scheme": "grid",
    "max_steps": 0,
    "epochs": 60,
}


def test_the_paper_recipe_fills_in_the_research_codes_values_and_explicit_ones_win(admin_user, tiny):
    version = train_version(admin_user)
    run = start(admin_user, "sft", {"model": tiny.base.pk, "dataset_version": version.pk, "recipe": "paper"})
    assert {name: run.params[name] for name in PAPER} == PAPER
    assert sft.total_steps(run.params, version) == 4  # 60 epochs of 2 decided pairs, 32 per step: ceil(3.75)
    changed = start(
        admin_user,
        "sft",
        {
            "model": tiny.base.pk,
            "dataset_version": version.pk,
            "recipe": "paper",
            "max_steps": 7,
            "image_resize": "cover_crop",
        },
    )
    assert (changed.params["max_steps"], changed.params["epochs"]) == (7, 0)  # explicit max_steps wins
    assert changed.params["image_resize"] == "cover_crop" and changed.params["vae_latents"] == "sample"


def test_a_paper_run_trains_with_the_research_codes_recipe(admin_user, tiny):
    version = train_version(admin_user)
    tiny_epochs = {name: value for name, value in SFT_TINY.items() if name != "max_steps"}
    run = execute(
        start(
            admin_user,
            "sft",
            {"model": tiny.base.pk, "dataset_version": version.pk, "recipe": "paper", **tiny_epochs, "epochs": 2},
        )
    )
    command = next(line for line in run.log_tail.splitlines() if " $ " in line)
    for option in (
        "--recipe paper",
        "--variants random",
        "--image-resize shorter_side",
        "--vae-latents sample",
        "--sigma-scheme grid",
        "--epochs 2",
        "--max-steps 0",
    ):
        assert option in command
    assert "/published/Science-T2I-Trainset --split train" in command, "random draws read a tuple per row"
    # Two decided train pairs, 2 per step: an epoch is one step.
    assert [m["optimizer_step"] for m in run.metrics] == [1, 2] and run.metrics[-1]["tuples_seen"] == 4
    assert run.output_model.config["recipe"] == "paper" and run.progress == 1.0

"""``sft`` runs: LoRA supervised fine-tuning of a registered FLUX base model on a dataset version.

The version's train split is exported as Science-T2I parquet (the published layout's train set, one row per
tuple, when the run draws variants at random) and ``python -m ml sft`` trains on its
(implicit prompt, correct image) pairs in a supervised process group (:mod:`.supervise`), with its
checkpoints in ``<run work dir>/sft``: a redelivered run resumes from the last checkpoint. The
adapter is then registered once as the ``generator_lora`` ``run-<run id>`` (parent: the base model,
trained on: the version; :func:`.artifacts.register_output`).

The trainer runs in one process (``ml.core.sft`` is not distributed), on the worker's GPU when it
has one. Hyper-parameter defaults are the paper's, as in :class:`ml.core.sft.SFTConfig`; ``recipe``
(``platform`` or ``paper``, :mod:`ml.core.recipes`) fills in the parameters where the two differ and
that the run leaves out (described default ``None``), and the run stores the filled-in values.
"""

from __future__ import annotations

from pathlib import Path

from curation.models import DatasetVersion
from ml.core import recipes
from ml.models import ModelVersion, Run
from ml.services.runs.artifacts import dataset_parquet, register_output
from ml.services.runs.context import RunContext
from ml.services.runs.flux import decided_members, trainer_options
from ml.services.runs.params import (
    Bool,
    Choice,
    Float,
    Int,
    Ref,
    RunParamsError,
    clean_dataset_version,
    clean_fields,
    clean_model,
    refuse_unknown,
)
from ml.services.runs.supervise import ml_command, run_command

# The fields of ml.core.sft.SFTConfig a run may set (the device is the worker's), with its defaults.
SCHEMA = {
    "recipe": Choice(recipes.DEFAULT, recipes.RECIPES),
    "resolution": Int(512, 8, 4096),
    "max_steps": Int(None, 0, 1_000_000),
    "epochs": Int(None, 0, 100_000),
    "batch_size": Int(4, 1, 1024),
    "grad_accum": Int(8, 1, 1024),
    "lr": Float(2e-5, 0.0, 1.0),
    "weight_decay": Float(1e-4, 0.0, 10.0),
    "max_grad_norm": Float(1.0, 1e-6, 1e6),
    "rank": Int(16, 1, 1024),
    "lora_alpha": Int(16, 1, 4096),
    "guidance": Float(0.0, 0.0, 100.0),
    "sigma_scheme": Choice(None, recipes.CHOICES["sigma_scheme"]),
    "variants": Choice(None, recipes.CHOICES["variants"]),
    "image_resize": Choice(None, recipes.CHOICES["image_resize"]),
    "vae_latents": Choice(None, recipes.CHOICES["vae_latents"]),
    "max_sequence_length": Int(512, 1, 512),
    "gradient_checkpointing": Bool(True),
    "checkpoint_every": Int(50, 1, 1_000_000),
    "seed": Int(0, 0, 2**62),
}
REFS = {
    "model": Ref("model", model_kinds=(ModelVersion.Kind.GENERATOR_BASE,), help="the FLUX base model to adapt"),
    "dataset_version": Ref("dataset_version", help="trains on its train split"),
}


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(recipes.with_defaults(params, recipes.SFT), SCHEMA, errors)
    if cleaned.get("max_steps") == 0 and cleaned.get("epochs") == 0:
        errors["max_steps"] = "give max_steps or epochs"
    elif cleaned.get("max_steps") and cleaned.get("epochs"):
        errors["epochs"] = "give max_steps or epochs, not both"
    model = clean_model(params, "model", (ModelVersion.Kind.GENERATOR_BASE,), errors)
    version = clean_dataset_version(params, errors)
    if version is not None and not decided_members(version, "train").exists():
        errors["dataset_version"] = f"dataset version {version.name} has no decided pairs in its train split"
    if errors:
        raise RunParamsError(errors)
    assert model is not None and version is not None  # else errors named them
    return {**cleaned, "model": model.pk, "dataset_version": version.pk}, model


def total_steps(params: dict, version) -> int:
    """The optimiser steps the trainer will take: ``max_steps``, or ``epochs`` over the version's decided
    train pairs (the rows of its export)."""
    if params["max_steps"]:
        return params["max_steps"]
    members = decided_members(version, "train")
    rows = members.values("pair__tuple_id").distinct().count() if params["variants"] == "random" else members.count()
    return recipes.steps_for_epochs(params["epochs"], rows, params["batch_size"], params["grad_accum"])


def training_data(params: dict, version, ctx: RunContext) -> Path:
    """What the trainer reads its train split from: with ``variants=random`` (the paper's draws) the published
    layout's Science-T2I-Trainset, one row per tuple with every paraphrase and decided image; else the
    combined export, one row per pair."""
    if params["variants"] != "random":
        return dataset_parquet(version, ctx)
    from curation.services.exporting import export_version

    folder = Path(export_version(version, "published")["path"]) / "Science-T2I-Trainset"
    ctx.log(f"dataset version {version.name}: training on the published train set {folder} (one row per tuple)")
    return folder


def handle(run: Run, ctx: RunContext) -> None:
    if run.output_model_id is not None:
        ctx.log(f"already registered {run.output_model}; nothing to do")
        return
    version = DatasetVersion.objects.get(pk=run.params["dataset_version"])
    base = run.input_model
    assert base is not None, "a started run of this kind has an input model"
    art = run.artifacts
    params = recipes.with_defaults(run.params, recipes.SFT)  # a run started before the recipes: platform
    if "training" not in art or not Path(art["training"]["lora_dir"]).is_dir():
        out = ctx.work_dir / "sft"
        args = [
            "--pipeline",
            base.location,
            "--data",
            str(training_data(params, version, ctx)),
            "--split",
            "train",
            "--out",
            str(out),
            *trainer_options(params, SCHEMA),
        ]
        art["training"] = run_command(
            ctx,
            ml_command("sft", args),
            metrics_file=out / "metrics.jsonl",
            total_steps=total_steps(params, version),
            progress_span=(0.0, 0.98),
        )
        ctx.save_artifacts()
    training = art["training"]
    last = run.metrics[-1] if run.metrics else {}
    metrics = {
        "loss": last.get("loss"),
        "optimizer_steps": training["optimizer_steps"],
        "tuples_seen": training["tuples_seen"],
    }
    ctx.log(
        f"trained {metrics['optimizer_steps']} optimiser steps on {metrics['tuples_seen']} tuples, "
        f"last loss {metrics['loss']}"
    )
    register_output(
        run,
        ctx,
        kind=ModelVersion.Kind.GENERATOR_LORA,
        source_dir=training["lora_dir"],
        parent=base,
        dataset_version=version,
        metrics=metrics,
    )

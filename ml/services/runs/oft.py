"""``oft`` runs: masked online fine-tuning of a registered FLUX generator with SciScore as reward.

Start from the ``generator_lora`` of an ``sft`` run (the paper's recipe: OFT without SFT first
collapses) or from a base model. The prompts are the implicit prompts of the dataset version's
train tuples with their subject phrase, written once to ``<run work dir>/oft-prompts.json`` in
the reference format (``{"prompt", "object"}``), so a redelivered run resumes on the same prompts
from the checkpoints in ``<run work dir>/oft``. The exported adapter (start LoRA + OFT in one, see
:mod:`ml.core.oft`) is registered once as the ``generator_lora`` ``run-<run id>`` with the input
model as its parent.

* ``scorer``: a registered scorer; the active scorer when not given (resolved when the run starts).
* ``detector``: the Grounding DINO directory **on the workers** (a path, as the released checkpoint
  is not a registry kind), e.g. ``/models/grounding-dino-base``; the demo's tiny one is
  ``ML_MODEL_ROOT/demo/tiny-detector``. Needed unless ``use_mask`` is false.
* Subject phrases come from ``PromptTuple.subject``. A tuple without one (the published
  Science-T2I data has no subject column) asks the detector for its whole implicit prompt: Grounding
  DINO boxes what the prompt's phrases match, and the whole image when nothing is found. The run
  log says how many tuples that concerns.
* ``recipe`` (``platform`` or ``paper``, :mod:`ml.core.recipes`) fills in the parameters where the two
  differ and that the run leaves out (described default ``None``); the run stores the filled-in values.
  The paper's ``reference="sft_adapter"`` trains the SFT LoRA on, so the exported adapter is that LoRA
  trained further.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from curation.models import DatasetVersion
from ml.core import recipes
from ml.models import ModelVersion, Run
from ml.services.runs import scoring
from ml.services.runs.artifacts import register_output
from ml.services.runs.context import RunContext
from ml.services.runs.flux import GENERATORS, decided_members, pipeline_paths, split_tuples, trainer_options
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

# The fields of ml.core.oft.OFTConfig a run may set (the device is the worker's), with its defaults.
SCHEMA = {
    "recipe": Choice(recipes.DEFAULT, recipes.RECIPES),
    "resolution": Int(512, 8, 4096),
    "num_steps": Int(30, 1, 200),
    "churn": Float(0.1, 0.0, 10.0),
    "sampler": Choice(None, recipes.CHOICES["sampler"]),
    "guidance": Float(None, 0.0, 100.0),
    "beta": Float(10.0, 0.0, 1e6),
    "clip_eps": Float(0.1, 1e-6, 0.99),
    "preference_loss": Choice(None, recipes.CHOICES["preference_loss"]),
    "mask_mean": Choice(None, recipes.CHOICES["mask_mean"]),
    "mask_grid": Choice(None, recipes.CHOICES["mask_grid"]),
    "subject_region": Choice(None, recipes.CHOICES["subject_region"]),
    "reference": Choice(None, recipes.CHOICES["reference"]),
    "lr": Float(3e-4, 0.0, 1.0),
    "weight_decay": Float(1e-4, 0.0, 10.0),
    "max_grad_norm": Float(1.0, 1e-6, 1e6),
    "rank": Int(16, 1, 1024),
    "lora_alpha": Int(16, 1, 4096),
    "prompts_per_step": Int(None, 1, 1024),
    "max_steps": Int(None, 1, 1_000_000),
    "prompt_sampling": Choice(None, recipes.CHOICES["prompt_sampling"]),
    "use_mask": Bool(True),
    "box_threshold": Float(0.35, 0.0, 1.0),
    "text_threshold": Float(0.25, 0.0, 1.0),
    "box_grow": Float(0.10, 0.0, 10.0),
    "max_sequence_length": Int(512, 1, 512),
    "gradient_checkpointing": Bool(True),
    "checkpoint_every": Int(10, 1, 1_000_000),
    "seed": Int(0, 0, 2**62),
}
REFS = {
    "model": Ref("model", model_kinds=GENERATORS, help="the generator to fine-tune: an SFT LoRA (recommended)"),
    "dataset_version": Ref("dataset_version", help="prompts from the tuples of its train split"),
    "scorer": Ref(
        "model",
        required=False,
        model_kinds=(ModelVersion.Kind.SCORER,),
        help="the reward model (default: the active scorer)",
    ),
    "detector": Ref(
        "path", required=False, help="Grounding DINO directory on the workers (needed unless use_mask is false)"
    ),
}


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(recipes.with_defaults(params, recipes.OFT), SCHEMA, errors)
    model = clean_model(params, "model", GENERATORS, errors)
    version = clean_dataset_version(params, errors)
    if version is not None and not decided_members(version, "train").exists():
        errors["dataset_version"] = f"dataset version {version.name} has no decided pairs in its train split"
    scorer = scoring.clean_scorer(params, "scorer", errors)
    detector = params.get("detector")
    if detector is None or detector == "":
        detector = None
        if cleaned.get("use_mask", True):
            errors["detector"] = "required unless use_mask is false: the Grounding DINO directory on the workers"
    elif not isinstance(detector, str) or not detector.strip():
        errors["detector"] = "must be a directory path on the workers"
    else:
        detector = detector.strip()
    if errors:
        raise RunParamsError(errors)
    assert model is not None and version is not None and scorer is not None  # else errors named them
    return {
        **cleaned,
        "model": model.pk,
        "dataset_version": version.pk,
        "scorer": scorer.pk,
        "detector": detector,
    }, model


def write_prompts(version, path: Path, ctx: RunContext) -> None:
    """The train tuples as a reference prompt file (written once, atomically)."""
    tuples = split_tuples(version, "train")
    items = [{"prompt": t.implicit_prompt, "object": t.subject.strip() or t.implicit_prompt} for t in tuples]
    missing = sum(1 for t in tuples if not t.subject.strip())
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(items, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)
    ctx.log(
        f"{len(items)} prompts from the train split of {version.name}"
        + (f"; {missing} without a subject: the detector looks for their implicit prompt" if missing else "")
    )


def handle(run: Run, ctx: RunContext) -> None:
    if run.output_model_id is not None:
        ctx.log(f"already registered {run.output_model}; nothing to do")
        return
    p, art = recipes.with_defaults(run.params, recipes.OFT), run.artifacts  # older runs: platform
    version = DatasetVersion.objects.get(pk=p["dataset_version"])
    model = run.input_model
    assert model is not None, "a started run of this kind has an input model"
    if "training" not in art or not Path(art["training"]["lora_dir"]).is_dir():
        prompts, out = ctx.work_dir / "oft-prompts.json", ctx.work_dir / "oft"
        if not prompts.exists():
            write_prompts(version, prompts, ctx)
        pipeline, lora = pipeline_paths(model)
        if lora is None:
            ctx.log("starting from a base model: the paper's OFT collapses without SFT first")
        scorer = ModelVersion.objects.get(pk=p["scorer"])
        args = [
            "--pipeline",
            pipeline,
            *(["--lora", lora] if lora else []),
            "--scorer",
            scorer.location,
            *(["--detector", p["detector"]] if p["detector"] else []),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            *trainer_options(p, SCHEMA),
        ]
        art["training"] = run_command(
            ctx,
            ml_command("oft", args),
            metrics_file=out / "metrics.jsonl",
            total_steps=p["max_steps"],
            progress_span=(0.0, 0.98),
        )
        ctx.save_artifacts()
    training = art["training"]
    last = run.metrics[-1] if run.metrics else {}
    metrics = {key: last.get(key) for key in ("loss", "reward_mean", "reward_gap", "mask_fraction", "clamped_fraction")}
    metrics.update(optimizer_steps=training["optimizer_steps"], prompts_seen=training["prompts_seen"])
    ctx.log(
        f"trained {metrics['optimizer_steps']} optimiser steps on {metrics['prompts_seen']} prompts, "
        f"last loss {metrics['loss']}, mean reward {metrics['reward_mean']}"
    )
    register_output(
        run,
        ctx,
        kind=ModelVersion.Kind.GENERATOR_LORA,
        source_dir=training["lora_dir"],
        parent=model,
        dataset_version=version,
        metrics=metrics,
    )

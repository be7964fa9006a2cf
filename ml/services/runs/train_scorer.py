"""``train_scorer`` runs: fine-tune a scorer on a dataset version and register the result.

Steps, each safe to repeat when the run is redelivered (a worker died, the broker delivered again):

1. export the version as parquet (reused when it exists), and in the published layout when the run draws
   variants at random (the paper's recipe): the trainer then reads Science-T2I-Trainset;
2. ``python -m ml train-scorer`` on its train split, selecting on validation, through
   :mod:`.supervise` (``accelerate launch`` for ``processes`` > 1). The trainer writes into
   ``<work dir>/train`` and resumes from its latest checkpoint there; once it has written
   ``summary.json``, a redelivery does not train again;
3. evaluate the best model, and the active scorer, on validation, test_S and test_C (in this
   process, see :mod:`.scoring`); kept in the run's artifacts, so a redelivery does not redo it;
4. copy ``best/`` to ``ML_MODEL_ROOT/scorer/run-<id>/`` (written aside, then renamed);
5. register the scorer ``run-<id>`` (parent: the base model; the dataset version; config: the
   run's parameters) and set ``Run.output_model`` in one transaction, under the run's row lock: a
   run that already has its output model registers nothing. The new scorer is not activated;
   an admin promotes it (``registry.activate_scorer``).

Hyper-parameters are :class:`ml.core.train_scorer.TrainConfig`'s, with the paper's defaults for
fine-tuning CLIP-H (lr 2e-6, weight decay 0.3, warmup 150, 600 steps, clip 1.0). The effective
batch is ``batch_size x grad_accum x processes`` tuples (the paper used 1,024).

``recipe`` (``platform`` or ``paper``, :mod:`ml.core.recipes`) fills in the parameters where the two
differ and that the run leaves out (their described default is ``None``); the run's stored parameters
are the filled-in values, so a finished run records exactly what trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from curation.models import DatasetVersion, Label
from ml.core import recipes
from ml.models import ModelVersion, Run
from ml.services import registry
from ml.services.runs import scoring, supervise
from ml.services.runs.context import RunContext
from ml.services.runs.params import (
    Bool,
    Choice,
    Float,
    Int,
    Ref,
    RunParamsError,
    clean_dataset_version,
    clean_fields,
    refuse_unknown,
)

SCHEMA = {
    "recipe": Choice(recipes.DEFAULT, recipes.RECIPES),
    "processes": Int(1, 1, 64),
    "lr": Float(2e-6, 0.0, 1.0),
    "weight_decay": Float(0.3, 0.0, 10.0),
    "weight_decay_scope": Choice(None, recipes.CHOICES["weight_decay_scope"]),
    "lr_schedule": Choice(None, recipes.CHOICES["lr_schedule"]),
    "warmup_steps": Int(150, 0, 1_000_000),
    "total_steps": Int(600, 1, 1_000_000),
    "lr_decay_steps": Int(0, 0, 10_000_000),
    "batch_size": Int(None, 1, 4096),
    "grad_accum": Int(None, 0, 4096),
    "effective_batch": Int(None, 0, 1_048_576),
    "loss_reduction": Choice(None, recipes.CHOICES["loss_reduction"]),
    "variants": Choice(None, recipes.CHOICES["variants"]),
    "clamp_logit_scale": Bool(None),
    "grad_clip": Float(1.0, 0.0, 1000.0),
    "seed": Int(0, 0, 2**31 - 1),
    "eval_every": Int(None, 0, 1_000_000),
    "eval_batch_size": Int(64, 1, 4096),
    "checkpoint_every": Int(50, 0, 1_000_000),
    "mixed_precision": Choice("auto", ("auto", "no", "bf16")),
    "gradient_checkpointing": Bool(False),
    "augment": Bool(False),
    "save_format": Choice("both", ("both", "open_clip", "hf")),
}
REFS = {
    "dataset_version": Ref("dataset_version", help="trains on its train split, selects on validation"),
    "base_model": Ref(
        "model",
        required=False,
        model_kinds=(ModelVersion.Kind.SCORER,),
        help="the scorer to start from (default: the active scorer)",
    ),
}
TRAINER_OPTIONS = (
    "recipe",
    "lr",
    "weight_decay",
    "weight_decay_scope",
    "lr_schedule",
    "warmup_steps",
    "total_steps",
    "lr_decay_steps",
    "batch_size",
    "grad_accum",
    "effective_batch",
    "loss_reduction",
    "variants",
    "grad_clip",
    "seed",
    "eval_every",
    "eval_batch_size",
    "checkpoint_every",
    "mixed_precision",
    "save_format",
)
TRAINER_FLAGS = ("gradient_checkpointing", "augment", "clamp_logit_scale")
TRAINED = (0.05, 0.8)  # the run's progress while the trainer runs


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(recipes.with_defaults(params, recipes.SCORER), SCHEMA, errors)
    if "warmup_steps" in cleaned and "total_steps" in cleaned and cleaned["warmup_steps"] > cleaned["total_steps"]:
        errors["warmup_steps"] = "must not exceed total_steps"
    _check_batch(cleaned, errors)
    version = clean_dataset_version(params, errors)
    if version is not None:
        decided = version.members.filter(label__in=(Label.EXPECTED, Label.OTHER))
        empty = [split for split in ("train", "validation") if not decided.filter(split=split).exists()]
        if empty:
            errors["dataset_version"] = (
                f"version {version.name} has no {' and no '.join(empty)} pairs with a "
                "correct image: nothing to train or select on"
            )
        cleaned["dataset_version"] = version.pk
    base = scoring.clean_scorer(params, "base_model", errors)
    cleaned["base_model"] = base.pk if base is not None else None
    if errors:
        raise RunParamsError(errors)
    return cleaned, base


def _check_batch(cleaned: dict, errors: dict) -> None:
    """``grad_accum`` 0 takes the step size from ``effective_batch``, which must then split evenly."""
    names = ("batch_size", "grad_accum", "effective_batch", "processes")
    if any(name not in cleaned for name in names):
        return
    per_micro_batch = cleaned["batch_size"] * cleaned["processes"]
    accum, effective = cleaned["grad_accum"], cleaned["effective_batch"]
    if accum == 0 and (effective == 0 or effective % per_micro_batch):
        errors["effective_batch"] = (
            f"with grad_accum 0 it must be a positive multiple of batch_size x processes ({per_micro_batch})"
        )
    elif accum and effective and effective != accum * per_micro_batch:
        errors["effective_batch"] = (
            f"is not grad_accum x batch_size x processes ({accum * per_micro_batch}); give one of them"
        )


def handle(run: Run, ctx: RunContext) -> None:
    if run.output_model is not None:
        ctx.log(f"scorer {run.output_model.name} was registered by an earlier delivery; nothing left to do")
        return
    p, art = run.params, run.artifacts
    version = DatasetVersion.objects.get(pk=p["dataset_version"])
    ctx.progress(phase="exporting the dataset version")
    data, rows = scoring.export_parquet(ctx, version)
    if p.get("variants") == "random":
        _export_trainset(ctx, version)
    ctx.progress(TRAINED[0])
    art["training"] = _train(run, ctx, data)
    ctx.save_artifacts()
    if "evaluation" not in art:
        art["evaluation"], art["comparison"] = evaluate_model(run, ctx, data, rows)
        ctx.save_artifacts()
    ctx.check_cancelled()
    location = _publish(run, Path(art["training"]["best_path"]))
    training = {
        key: art["training"][key] for key in ("best_step", "best_val_accuracy", "optimizer_steps", "tuples_seen")
    }
    metrics = {
        "dataset_version": version.pk,
        **art["evaluation"],
        "comparison": art["comparison"],
        "training": training,
    }
    model = _register(run, version, location, metrics)
    ctx.log(
        f"registered scorer {model.name} (id {model.pk}) at {location}; it is not active: promote it from "
        "the model registry"
    )


def _trainset(version_id: int) -> Path:
    from curation.services import exporting

    return exporting.export_dir(version_id, "published") / "Science-T2I-Trainset"


def _export_trainset(ctx: RunContext, version: DatasetVersion) -> None:
    """The version in the published layout (reused when it exists): its Science-T2I-Trainset has one row per
    tuple with every paraphrase and every decided image, which ``variants=random`` draws from."""
    from curation.services import exporting

    exporting.export_version(version, "published")
    ctx.log(f"published layout of {version.name}: training on {_trainset(version.pk)} (one row per tuple)")


def trainer_command(run: Run, data: Path, out: Path) -> supervise.Command:
    """``python -m ml train-scorer`` with the run's hyper-parameters (``accelerate launch`` for several processes).

    With ``variants=random`` (the paper's per-example draws) the train split is read from the version's
    published-layout Science-T2I-Trainset, where a row holds a tuple's paraphrases and all its decided images;
    the combined export has one pair per row, so a draw there could only pick among one image per side.
    Validation always reads the combined export's validation split."""
    p, base = run.params, run.input_model
    assert base is not None, "a started run of this kind has an input model"
    train = _trainset(p["dataset_version"]) if p.get("variants") == "random" else data
    args = [
        "--train",
        str(train),
        "--train-split",
        "train",
        "--val",
        str(data),
        "--val-split",
        "validation",
        "--out",
        str(out),
        "--model",
        base.location,
    ]
    if (base.config or {}).get("arch"):
        args += ["--arch", base.config["arch"]]
    for name in TRAINER_OPTIONS:  # a run started before an option existed leaves it to the trainer's default
        if p.get(name) is not None:
            args += ["--" + name.replace("_", "-"), str(p[name])]
    args += [
        f"--{'' if p[name] else 'no-'}{name.replace('_', '-')}" for name in TRAINER_FLAGS if p.get(name) is not None
    ]
    return supervise.ml_command("train-scorer", args, processes=p["processes"])


def _train(run: Run, ctx: RunContext, data: Path) -> dict:
    """The trainer's summary: from an earlier delivery that finished training, else from training now."""
    out = ctx.work_dir / "train"
    summary = out / "summary.json"
    if summary.is_file():
        ctx.log("training finished in an earlier delivery; using its best model")
        return json.loads(summary.read_text())
    result = supervise.run_command(
        ctx,
        trainer_command(run, data, out),
        metrics_file=out / "metrics.jsonl",
        total_steps=run.params["total_steps"],
        progress_span=TRAINED,
    )
    ctx.log(
        f"trained {result['optimizer_steps']} steps on {result['tuples_seen']} tuples; best validation "
        f"accuracy {result['best_val_accuracy']} at step {result['best_step']}"
    )
    return result


def evaluate_model(run: Run, ctx: RunContext, data: Path, rows: dict) -> tuple[dict, dict | None]:
    """The new scorer's metrics per split, and its comparison with the active scorer (None without one)."""
    batch = run.params["eval_batch_size"]
    ctx.progress(phase="evaluating the new scorer")
    mine = scoring.evaluate(
        ctx, run.artifacts["training"]["best_path"], None, data, rows, scoring.EVAL_SPLITS, batch_size=batch
    )
    ctx.progress(0.9, phase="evaluating the active scorer")
    active = registry.active_scorer()
    theirs = (
        {}
        if active is None
        else scoring.evaluate(ctx, active.location, active, data, rows, list(mine), batch_size=batch)
    )
    ctx.progress(0.95)
    for split, result in mine.items():
        other = (
            f" (active scorer {active.name}: {theirs[split]['accuracy']:.3f})"
            if active is not None and split in theirs
            else ""
        )
        ctx.log(scoring.summary_line(split, result) + other)
    if active is None:
        ctx.log("no scorer is active: nothing to compare with")
        return mine, None
    return mine, {"model": active.pk, "name": active.name, "splits": _compare(mine, theirs)}


def _compare(mine: dict, theirs: dict) -> dict:
    """Per split: both accuracies and the difference (new - active), overall and per task."""

    def pair(a: float, b: float | None) -> dict:
        return {"accuracy": a, "active_accuracy": b, "delta": None if b is None else a - b}

    return {
        split: {
            **pair(result["accuracy"], theirs[split]["accuracy"]),
            "by_task": {
                task: pair(r["accuracy"], theirs[split]["by_task"].get(task, {}).get("accuracy"))
                for task, r in result["by_task"].items()
            },
        }
        for split, result in mine.items()
        if split in theirs
    }


def _publish(run: Run, best: Path) -> Path:
    """Copy the best model to ``ML_MODEL_ROOT/scorer/run-<id>``: written aside, then renamed over
    whatever an interrupted earlier delivery left there."""
    target = Path(settings.ML_MODEL_ROOT) / "scorer" / f"run-{run.pk}"
    aside = target.with_name(target.name + ".tmp")
    shutil.rmtree(aside, ignore_errors=True)
    shutil.copytree(best, aside)
    shutil.rmtree(target, ignore_errors=True)
    aside.rename(target)
    return target


def _register(run: Run, version: DatasetVersion, location: Path, metrics: dict) -> ModelVersion:
    """Register the new scorer and make it the run's output, once: under the run's row lock."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.output_model is not None:
            return locked.output_model
        model = registry.register_model(
            run.created_by,
            ModelVersion.Kind.SCORER,
            f"run-{run.pk}",
            str(location),
            config=run.params,
            metrics=metrics,
            parent=run.input_model,
            dataset_version=version,
        )
        Run.objects.filter(pk=run.pk).update(output_model=model)
    run.output_model = model
    return model

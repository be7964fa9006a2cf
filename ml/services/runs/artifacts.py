"""Steps that training and evaluation runs share: a dataset version as Science-T2I parquet, the
model a run produced registered exactly once, and evaluation results merged into a model's metrics.

Exactly once: a run whose worker dies is redelivered and runs its handler again, so every step
here may be repeated at any point. :func:`register_output` copies the trained files to
``ML_MODEL_ROOT/<kind>/run-<run id>/`` and registers the model in the same transaction that sets
``Run.output_model``, under the run's row lock; a repeat after a crash between the copy and the
registration copies again and registers once, and a repeat after the registration returns the
registered model without touching anything.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotation.services import audit
from curation.services.exporting import export_version
from ml.models import ModelVersion, Run
from ml.services import registry
from ml.services.runs.context import RunContext


def dataset_parquet(version, ctx: RunContext) -> Path:
    """The Science-T2I parquet export of ``version`` (a finished export is reused; versions are immutable).

    The directory holds ``<split>-NNNNN-of-NNNNN.parquet`` shards that ``python -m ml ... --data DIR
    --split train`` reads; a split without decided pairs has no file.
    """
    result = export_version(version, "parquet")
    splits = ", ".join(f"{split} {n}" for split, n in result["counts"]["splits"].items()) or "no rows"
    ctx.log(f"dataset version {version.name}: parquet at {result['path']} ({splits})")
    return Path(result["path"])


def model_dir(kind: str, run: Run) -> Path:
    """Where the model a run produces is kept: ``ML_MODEL_ROOT/<kind>/run-<run id>``."""
    return Path(settings.ML_MODEL_ROOT) / kind / f"run-{run.pk}"


def register_output(
    run: Run,
    ctx: RunContext,
    *,
    kind: str,
    source_dir: str | Path,
    parent: ModelVersion | None,
    dataset_version,
    metrics: dict,
) -> ModelVersion:
    """Copy ``source_dir`` into :func:`model_dir` and register it as ``run-<run id>``, exactly once.

    The model's config is the run's parameters; the registration is made in the name of the run's
    starter and recorded in ``run.output_model``. Returns the registered model (the one registered
    earlier when this is a repeat).
    """
    done = Run.objects.filter(pk=run.pk).values_list("output_model", flat=True).get()
    if done is not None:
        return _adopt(run, ModelVersion.objects.get(pk=done))
    target = model_dir(kind, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shutil.copytree(source_dir, staging, dirs_exist_ok=True)
        with transaction.atomic():
            locked = Run.objects.select_for_update().get(pk=run.pk)
            if locked.output_model_id is not None:  # another delivery got here first
                return _adopt(run, locked.output_model)
            if target.exists():  # a copy left by a delivery that died before registering
                shutil.rmtree(target)
            staging.rename(target)
            model = registry.register_model(
                run.created_by,
                kind,
                target.name,
                str(target),
                config=run.params,
                metrics=metrics,
                parent=parent,
                dataset_version=dataset_version,
            )
            Run.objects.filter(pk=run.pk).update(output_model=model)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.log(f"registered {kind} {model.name} (model {model.pk}) at {target}")
    return _adopt(run, model)


def _adopt(run: Run, model: ModelVersion) -> ModelVersion:
    run.output_model = model
    return model


def merge_model_metrics(model: ModelVersion, key: str, value, *, run: Run | None = None) -> ModelVersion:
    """Set ``model.metrics[key] = value``, keeping every other key (row-locked, audited).

    Evaluation runs record their summaries this way, e.g. under ``eval:<dataset version>:<split>``.
    """
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=model.pk)
        before = locked.metrics.get(key)
        locked.metrics = {**locked.metrics, key: value}
        locked.save(update_fields=["metrics"])
        audit.record(
            run.created_by if run else None,
            "model.metrics_recorded",
            locked,
            before={key: before},
            after={key: value, "run": run.pk if run else None},
        )
    model.metrics = locked.metrics
    return locked

"""``eval_scorer`` runs: pairwise accuracy of a registered scorer on a dataset version's splits.

Per split: overall, per task, discipline and ST/CT type (:func:`ml.core.evaluate.pairwise_accuracy`).
The results go to the run's artifacts (``evaluation``: ``{split: result}``), its metrics series
(one record per split) and the model's metrics under ``evaluations[<dataset version id>]``, in
the same per-split shape a ``train_scorer`` run gives its scorer at the top level. Repeating the
run (or a redelivery) overwrites the same entries.
"""

from __future__ import annotations

from django.db import transaction

from curation.models import DatasetVersion
from ml.models import ModelVersion, Run
from ml.services.runs import scoring
from ml.services.runs.context import RunContext
from ml.services.runs.params import Int, Ref, RunParamsError, clean_dataset_version, clean_fields, refuse_unknown

SCHEMA = {
    "splits": scoring.Splits(scoring.EVAL_SPLITS),
    "batch_size": Int(64, 1, 4096),
}
REFS = {
    "model": Ref(
        "model",
        required=False,
        model_kinds=(ModelVersion.Kind.SCORER,),
        help="the scorer to evaluate (default: the active scorer)",
    ),
    "dataset_version": Ref("dataset_version"),
}


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)
    version = clean_dataset_version(params, errors)
    if version is not None:
        cleaned["dataset_version"] = version.pk
    model = scoring.clean_scorer(params, "model", errors)
    cleaned["model"] = model.pk if model is not None else None
    if errors:
        raise RunParamsError(errors)
    return cleaned, model


def handle(run: Run, ctx: RunContext) -> None:
    p, model = run.params, run.input_model
    assert model is not None, "a started run of this kind has an input model"
    version = DatasetVersion.objects.get(pk=p["dataset_version"])
    ctx.progress(phase="exporting the dataset version")
    data, rows = scoring.export_parquet(ctx, version)
    ctx.progress(0.1, phase="loading the model and scoring")
    results = scoring.evaluate(ctx, model.location, model, data, rows, p["splits"], batch_size=p["batch_size"])
    if not results:
        raise ValueError(f"version {version.name} has no rows in {', '.join(p['splits'])}")
    for split, result in results.items():
        ctx.log(scoring.summary_line(split, result))
    run.artifacts.update(dataset_version=version.pk, model=model.pk, evaluation=results)
    ctx.save_artifacts()
    ctx.set_metrics([scoring.metric_record(split, result) for split, result in results.items()])
    _record(model, version, results)


def _record(model: ModelVersion, version: DatasetVersion, results: dict) -> None:
    """Merge the results into ``model.metrics["evaluations"][version id]`` under the model's row lock."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=model.pk)
        evaluations = dict(locked.metrics.get("evaluations", {}))
        evaluations[str(version.pk)] = {**evaluations.get(str(version.pk), {}), **results}
        locked.metrics = {**locked.metrics, "evaluations": evaluations}
        locked.save(update_fields=["metrics"])

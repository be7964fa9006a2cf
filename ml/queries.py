"""Read-only queries behind the runs and registry pages and API (mutations go through ml.services).

* :func:`metric_plots` turns a run's metrics series into plot series for ``static/ml/plot.js``;
* :func:`compare_scorers` lines up two models' evaluation metrics per split and task;
* :func:`param_rows` names what a run's reference parameters point at (models, dataset versions);
* :func:`run_images` lists the images a generate run made (run → image; image → run is
  :func:`ml.services.registry.image_origin`).
"""

from __future__ import annotations

import json
import math
from numbers import Real

from ml.models import ModelVersion, Run
from ml.services.runs import kinds

SPLITS = ("validation", "test_S", "test_C")  # the evaluation splits compared first, in this order
X_KEY = "step"
MAX_POINTS = 2000  # points per series sent to the browser (evenly thinned beyond that)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return None
    return float(value)


def _accuracy(value) -> float | None:
    """A task's or split's accuracy, stored as a number or as ``{"accuracy": ...}``."""
    return _number(value.get("accuracy")) if isinstance(value, dict) else _number(value)


def _thin(points: list) -> list:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def metric_plots(metrics) -> list[dict]:
    """One plot per metric of a run's series: ``[{"name", "x", "series": [{"name", "points"}]}]``.

    x is each record's ``step``, else its position. A numeric key is one series; a dict of numbers
    (or of ``{"accuracy": ...}``, e.g. accuracy per task) is one series per entry, on one plot.
    """
    records = [r for r in metrics if isinstance(r, dict)] if isinstance(metrics, list) else []
    plots: dict[str, dict[str, list]] = {}
    use_step = any(_number(r.get(X_KEY)) is not None for r in records)
    for index, record in enumerate(records):
        x = _number(record.get(X_KEY)) if use_step else float(index)
        if x is None:
            continue
        for key, value in record.items():
            if key == X_KEY:
                continue
            entries = value.items() if isinstance(value, dict) else [(key, value)]
            for name, entry in entries:
                y = _accuracy(entry)
                if y is not None:
                    plots.setdefault(key, {}).setdefault(str(name), []).append([x, y])
    return [
        {
            "name": key,
            "x": X_KEY if use_step else "record",
            "series": [{"name": name, "points": _thin(points)} for name, points in sorted(series.items())],
        }
        for key, series in plots.items()
    ]


def find_scorer(value) -> ModelVersion | None:
    """The registered scorer whose id is ``value`` (a query-string value), else None."""
    value = str(value or "")
    if not value.isdigit():
        return None
    return ModelVersion.objects.filter(pk=int(value), kind=ModelVersion.Kind.SCORER).first()


def _cell(a: float | None, b: float | None) -> dict:
    return {"a": a, "b": b, "diff": None if a is None or b is None else b - a}


def _evaluations(metrics: dict) -> list[str]:
    """The splits to compare: the known ones, then any other key holding an evaluation."""
    extra = [
        key
        for key, value in metrics.items()
        if key not in SPLITS
        and isinstance(value, dict)
        and ("accuracy" in value or isinstance(value.get("by_task"), dict))
    ]
    return [*SPLITS, *extra]


def compare_scorers(a: ModelVersion, b: ModelVersion) -> list[dict]:
    """Accuracy of ``a`` and ``b`` per split, overall and per task, with ``b - a``; None where missing.

    Returns ``[{"split", "overall": {"a", "b", "diff"}, "tasks": [{"task", "a", "b", "diff"}]}]``.
    """
    ma = a.metrics if isinstance(a.metrics, dict) else {}
    mb = b.metrics if isinstance(b.metrics, dict) else {}
    rows = []
    for split in dict.fromkeys(_evaluations(ma) + _evaluations(mb)):
        ea, eb = ma.get(split), mb.get(split)
        by_a = ea.get("by_task") if isinstance(ea, dict) else None
        by_b = eb.get("by_task") if isinstance(eb, dict) else None
        by_a, by_b = (by if isinstance(by, dict) else {} for by in (by_a, by_b))
        rows.append(
            {
                "split": split,
                "overall": _cell(_accuracy(ea), _accuracy(eb)),
                "tasks": [
                    {"task": task, **_cell(_accuracy(by_a.get(task)), _accuracy(by_b.get(task)))}
                    for task in sorted(set(by_a) | set(by_b))
                ],
            }
        )
    return rows


def param_rows(run: Run) -> list[dict]:
    """The run's parameters in its kind's order: ``{"name", "value", "text", "model" | "dataset_version"}``.

    A reference to a registered model or a dataset version carries the object (None when deleted
    or when the value is not an id, e.g. a pipeline path).
    """
    from curation.models import DatasetVersion

    fields = kinds.describe(run.kind) if run.kind in kinds.MODULES else []
    refs = {f["name"]: f["ref"] for f in fields if "ref" in f}
    order = [f["name"] for f in fields if f["name"] in run.params]
    ids = {
        ref: [run.params[name] for name, r in refs.items() if r == ref and isinstance(run.params.get(name), int)]
        for ref in ("model", "dataset_version")
    }
    found = {
        "model": ModelVersion.objects.in_bulk(ids["model"]),
        "dataset_version": DatasetVersion.objects.in_bulk(ids["dataset_version"]),
    }
    rows = []
    for name in dict.fromkeys([*order, *run.params]):
        value = run.params[name]
        row = {"name": name, "value": value, "text": value if isinstance(value, str) else json.dumps(value)}
        if refs.get(name) in found and isinstance(value, int):
            row[refs[name]] = found[refs[name]].get(value)
        rows.append(row)
    return rows


def runs_using(model: ModelVersion):
    """Runs that took ``model`` as their input, latest first."""
    return model.runs_as_input.select_related("created_by").order_by("-created_at", "-id")


def run_images(run: Run) -> list[dict]:
    """The images a generate run recorded: ``{"image", "tuple", "kind", "seed"}`` per image."""
    images = run.artifacts.get("images") if isinstance(run.artifacts, dict) else None
    return [entry for entry in images or [] if isinstance(entry, dict) and "image" in entry]

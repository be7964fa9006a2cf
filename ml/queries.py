"""Read-only queries behind the runs and registry pages and API (mutations go through ml.services).

* :func:`metric_plots` turns a run's metrics series into plot series for ``static/ml/plot.js``;
* :func:`compare_scorers` lines up two models' evaluation metrics per split and task;
* :func:`param_rows` names what a run's reference parameters point at (models, dataset versions);
* :func:`run_images` lists the images a generate run made (run → image; image → run is
  :func:`ml.services.registry.image_origin`);
* :func:`readable_log` shows a run's log without progress-bar glyphs (the last state of each bar);
* :func:`phase_text` says what a run is doing ("loading the model…") where a bare 0 % would say nothing;
* :func:`metric_table` lays a model's evaluation metrics out as a table (task × split) and other figures.
"""

from __future__ import annotations

import json
import math
import re
from numbers import Real

from django.db.models import Q

from annotation.models import Pair
from ml.models import JudgedItem, ModelVersion, PairScore, Run
from ml.services.runs import kinds

SPLITS = ("validation", "test_S", "test_C")  # the evaluation splits compared first, in this order
X_KEYS = ("step", "optimizer_step")  # the first one a run's records carry is the x axis of its plots
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

    x is each record's ``step`` (else ``optimizer_step``, as the FLUX trainers log it), else its position.
    A numeric key is one series; a dict of numbers
    (or of ``{"accuracy": ...}``, e.g. accuracy per task) is one series per entry, on one plot.
    """
    records = [r for r in metrics if isinstance(r, dict)] if isinstance(metrics, list) else []
    plots: dict[str, dict[str, list]] = {}
    x_key = next((key for key in X_KEYS if any(_number(r.get(key)) is not None for r in records)), None)
    for index, record in enumerate(records):
        x = _number(record.get(x_key)) if x_key else float(index)
        if x is None:
            continue
        for key, value in record.items():
            if key == x_key:
                continue
            entries = value.items() if isinstance(value, dict) else [(key, value)]
            for name, entry in entries:
                y = _accuracy(entry)
                if y is not None:
                    plots.setdefault(key, {}).setdefault(str(name), []).append([x, y])
    return [
        {
            "name": key,
            "x": x_key or "record",
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


def default_pair() -> tuple[ModelVersion | None, ModelVersion | None]:
    """Two different scorers to compare when none were chosen: the active one (else the latest) as a, and
    the latest other one as b; (None, None) while fewer than two are registered."""
    scorers = ModelVersion.objects.filter(kind=ModelVersion.Kind.SCORER).order_by("-created_at", "-id")
    a = scorers.filter(is_active=True).first() or scorers.first()
    b = scorers.exclude(pk=a.pk).first() if a else None
    return (a, b) if b else (None, None)


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


def compared_with(model: ModelVersion, other: ModelVersion) -> bool:
    """Whether ``other``'s training run measured ``model`` (then the active scorer) on its data."""
    comparison = other.metrics.get("comparison") if isinstance(other.metrics, dict) else None
    return isinstance(comparison, dict) and comparison.get("model") == model.pk


def _with_borrowed(model: ModelVersion, other: ModelVersion) -> dict:
    """``model``'s metrics, completed with the figures ``other``'s training run measured for it as the then
    active scorer on the same data (its ``comparison``): a scorer registered by hand often has none of its own,
    and it is the one every trained scorer is compared with. Its own figures win."""
    own = model.metrics if isinstance(model.metrics, dict) else {}
    if not compared_with(model, other):
        return own
    comparison = other.metrics["comparison"]
    splits = comparison.get("splits") if isinstance(comparison.get("splits"), dict) else {}
    merged = dict(own)
    for split, figures in splits.items():
        if not isinstance(figures, dict):
            continue
        mine = own.get(split) if isinstance(own.get(split), dict) else {}
        by_task = figures.get("by_task") if isinstance(figures.get("by_task"), dict) else {}
        borrowed = {task: f.get("active_accuracy") for task, f in by_task.items() if isinstance(f, dict)}
        own_by_task = mine.get("by_task") if isinstance(mine.get("by_task"), dict) else {}
        merged[split] = {
            "accuracy": mine.get("accuracy", figures.get("active_accuracy")),
            "by_task": {**borrowed, **own_by_task},
        }
    return merged


def compare_scorers(a: ModelVersion, b: ModelVersion) -> list[dict]:
    """Accuracy of ``a`` and ``b`` per split, overall and per task, with ``b - a``; None where missing.

    Returns ``[{"split", "overall": {"a", "b", "diff"}, "tasks": [{"task", "a", "b", "diff"}]}]``.
    """
    ma, mb = _with_borrowed(a, b), _with_borrowed(b, a)
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


# --- the log ------------------------------------------------------------------------------------

STAMP = re.compile(r"^\d\d:\d\d:\d\d ")  # RunContext.log's prefix
BAR = re.compile(r"(\d{1,3})%\|[^|\n]{0,400}\| *")  # tqdm: " 43%|████▎     | 3/7 [00:01<00:02, 1.9it/s]"
BLOCKS = re.compile("[\u2580-\u259f]+")  # block elements: bar glyphs left anywhere else
COUNT = re.compile(r"(\d+)/(\d+|\?)")


def _bar_key(line: str) -> tuple[str, int] | None:
    """(what the bar is of, how far it is) for a progress-bar line, else None."""
    match = BAR.search(line)
    if match is None:
        return None
    done = COUNT.search(line, match.end())
    return STAMP.sub("", line[: match.start()]).strip(), int(done.group(1)) if done else int(match.group(1))


def readable_log(text: str) -> str:
    """A run's log as a person reads it: each line as its last carriage-return redraw left it, progress
    bars without their block glyphs (``43% 3/7 [00:01<00:02]``), and a bar redrawn on consecutive lines
    only in its last state (a bar that starts again, its count going down, is a new bar)."""
    lines: list[str] = []
    previous: tuple[str, int] | None = None
    for raw in str(text or "").split("\n"):
        parts = [part for part in raw.split("\r") if part.strip()]
        line = parts[-1] if parts else ""
        if len(parts) > 1 and STAMP.match(raw) and not STAMP.match(line):
            line = raw[:9] + line.lstrip()  # the redraw keeps the time the line was logged
        key = _bar_key(line)
        line = BLOCKS.sub("", BAR.sub(lambda m: m.group(1) + "% ", line)).rstrip()
        if key is not None and previous is not None and key[0] == previous[0] and key[1] >= previous[1] and lines:
            lines[-1] = line
        else:
            lines.append(line)
        previous = key
    return "\n".join(lines)


def phase_text(run: Run) -> str:
    """What the run is doing, for the progress line: the worker's phase ("loading the model…"), "waiting
    for a worker…" while queued, "starting…" before anything is reported; empty once it finished, or while
    it moves on without saying how (its percentage says enough)."""
    if run.status == Run.Status.QUEUED:
        return "waiting for a GPU worker…"
    if run.status != Run.Status.RUNNING:
        return ""
    if run.phase:
        return f"{run.phase}…"
    return "starting…" if run.progress == 0 else ""


# --- a model's metrics --------------------------------------------------------------------------


def _figure(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        text = ", ".join(_figure(v) for v in value[:20]) + (" …" if len(value) > 20 else "")
        out.append({"name": prefix, "text": text})
    else:
        out.append({"name": prefix, "text": _figure(value)})


def metric_table(metrics) -> dict:
    """A model's metrics laid out to read: ``{"splits": [...], "rows": [{"task", "cells": [...]}], "other":
    [{"name", "text"}]}``: accuracy per task (rows, "overall" first) and evaluation split (columns), as in
    :func:`compare_scorers`; every other figure flattened to a dotted name and its value."""
    metrics = metrics if isinstance(metrics, dict) else {}
    splits = [split for split in _evaluations(metrics) if isinstance(metrics.get(split), dict)]
    tasks: dict[str, None] = {}
    for split in splits:
        by_task = metrics[split].get("by_task")
        tasks.update(dict.fromkeys(sorted(by_task) if isinstance(by_task, dict) else []))
    rows = [{"task": "overall", "cells": [_accuracy(metrics[split]) for split in splits]}]
    for task in tasks:
        cells = []
        for split in splits:
            by_task = metrics[split].get("by_task")
            cells.append(_accuracy(by_task.get(task)) if isinstance(by_task, dict) else None)
        rows.append({"task": task, "cells": cells})
    other: list[dict] = []
    for key, value in metrics.items():
        if key in splits:
            rest = {k: v for k, v in value.items() if k not in ("accuracy", "by_task")}
            if rest:
                _flatten(key, rest, other)
        else:
            _flatten(str(key), value, other)
    return {"splits": splits, "rows": rows if splits else [], "other": other}


# --- the pair gallery's ml filters (ml/views_gallery.py) ----------------------------------------


def pairs_generated_by(run: Run):
    """Ids of the pairs either of whose images ``run`` generated (``Image.generator`` is ``run:<id>:<model>``)."""
    prefix = f"run:{run.pk}:"
    return Pair.objects.filter(
        Q(image_correct__generator__startswith=prefix) | Q(image_wrong__generator__startswith=prefix)
    ).values("pk")


def pairs_the_scorer_disagrees_with(scorer: ModelVersion | None):
    """Ids of the pairs whose score from ``scorer`` prefers the expected-wrong image (none without a scorer)."""
    if scorer is None:
        return Pair.objects.none().values("pk")
    return PairScore.objects.filter(model=scorer, disagrees=True).values("pair_id")


def pair_opinions(pair: Pair) -> dict:
    """What the models think of ``pair``, for a reviewer who asks (advisory): the share (0..1) of each
    opinion that prefers the pair's *expected* image.

    ``scorer``: the active scorer's, from its ``score_pairs`` scores (the softmax probability), else from
    an ``eval_judge`` run that judged the pair (0, 0.5 or 1); ``judges``: the latest opinion of each LMM judge
    that was asked about the pair (``judge_pairs`` or ``eval_judge``), None where its answers could not be
    read. Never the pair's judgements or consensus: those are curation's, on the same page."""
    active = ModelVersion.objects.filter(kind=ModelVersion.Kind.SCORER, is_active=True).first()
    scorer = None
    if active is not None:
        score = PairScore.objects.filter(pair=pair, model=active).first()
        if score is not None:
            scorer = {
                "model": active.pk,
                "name": active.name,
                "prefers_expected": score.probability,
                "run": score.run_id,
            }
        else:
            item = JudgedItem.objects.filter(pair=pair, run__input_model=active).order_by("-run_id").first()
            if item is not None and item.prefers_expected is not None:
                scorer = {
                    "model": active.pk,
                    "name": active.name,
                    "prefers_expected": item.prefers_expected,
                    "run": item.run_id,
                }
    judges, seen = [], set()
    items = (
        JudgedItem.objects.filter(pair=pair, run__input_model__kind=ModelVersion.Kind.JUDGE)
        .select_related("run__input_model")
        .order_by("-run_id")
    )
    for item in items:
        model = item.run.input_model
        if model is None or model.pk in seen:
            continue
        seen.add(model.pk)
        judges.append(
            {
                "model": model.pk,
                "name": model.name,
                "prefers_expected": item.prefers_expected,
                "run": item.run_id,
                "protocol": item.run.artifacts.get("protocol", ""),
            }
        )
    return {"pair": pair.pk, "scorer": scorer, "judges": judges}

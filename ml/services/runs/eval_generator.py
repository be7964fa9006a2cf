"""``eval_generator`` runs: SciScore of a generator's IP/EP/SP generations per task, ND, and RI
against a base model (see :mod:`ml.core.eval_generator` for the metrics and seeds).

The tuples are those of the dataset version's decided pairs in ``split`` (``test_S`` by default),
optionally only of ``tasks``; resolved once, so a redelivered run evaluates the same tuples. The
run generates and scores in the worker process, ``CHUNK`` tuples at a time, appending each chunk's
scored generations to ``<run work dir>/<model|base>.jsonl``: a redelivered run skips the chunks
already there, and a cancelled run stops between chunks. Seeds depend only on a tuple's position,
so a resumed evaluation equals an uninterrupted one.

With ``base_model``, RI needs the base's scores on the same tuples with the same settings: an
earlier succeeded run that evaluated the base (as its model or as its base) with the same
dataset version, split, tasks, scorer and generation settings is reused, else this run evaluates
the base first.

With ``judge`` (an LMM judge), the rubric protocol runs beside the SciScore protocol: the judge grades
every implicit-prompt image with its tuple's rubrics (scene gate, then reality 0–3), and each group gets
the normalised reality score 0–100 (:mod:`ml.core.eval_generator`). ``keep_images`` stores the
implicit-prompt images (``ip``, the default), all of them or none in the media storage
(:func:`image_name`), so the leaderboard's images can be browsed.

Results: ``run.artifacts["evaluation"]`` (per task, per discipline and overall: IP, EP, SP, ND, RI, the
reality score, image counts, notes, settings, the generations file) and ``["base_evaluation"]``;
``run.metrics`` has one record per group; each evaluated model's registry metrics get the summary under
``eval:<version>:<split>`` (``:<task+task>`` appended when filtered by task).
"""

from __future__ import annotations

import io
import json

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.models import PromptTuple, Task
from curation.models import DatasetVersion, VersionMember
from ml.core.eval_generator import KINDS as PROMPT_KINDS
from ml.core.eval_generator import PromptTriple, summarize
from ml.models import ModelVersion, Run
from ml.services.runs import scoring
from ml.services.runs.artifacts import merge_model_metrics
from ml.services.runs.context import RunContext
from ml.services.runs.flux import GENERATORS, decided_members, pipeline_paths, split_tuples
from ml.services.runs.params import (
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

CHUNK = 8  # tuples generated and scored between two saves
SCHEMA = {
    "split": Choice(VersionMember.Split.TEST_S, tuple(VersionMember.Split.values)),
    "images_per_prompt": Int(4, 1, 64),
    "steps": Int(30, 1, 200),
    "guidance": Float(3.5, 0.0, 30.0),
    "width": Int(512, 4, 2048),
    "height": Int(512, 4, 2048),
    "seed": Int(0, 0, 2**62),
    "batch_size": Int(4, 1, 64),
    "max_sequence_length": Int(512, 1, 512),
    "keep_images": Choice("ip", ("none", "ip", "all")),
}
REFS = {
    "model": Ref("model", model_kinds=GENERATORS, help="the generator to evaluate"),
    "dataset_version": Ref("dataset_version", help="the tuples of its split are evaluated"),
    "scorer": Ref(
        "model",
        required=False,
        model_kinds=(ModelVersion.Kind.SCORER,),
        help="scores every image against the implicit prompt (default: the active scorer)",
    ),
    "base_model": Ref(
        "model",
        required=False,
        model_kinds=GENERATORS,
        help="the model to compute RI against (e.g. the base of a fine-tuned LoRA)",
    ),
    "tasks": Ref("tasks", required=False, help='task codes to evaluate, e.g. ["BU", "RU"] (default: all)'),
    "judge": Ref(
        "model",
        required=False,
        model_kinds=(ModelVersion.Kind.JUDGE,),
        help="an LMM judge that grades the implicit-prompt images with each tuple's rubrics (default: none)",
    ),
}
# Parameters that decide the scores of a model's generations (batch_size does not change an image).
SAME_SCORES = (
    "dataset_version",
    "split",
    "tasks",
    "scorer",
    "images_per_prompt",
    "steps",
    "guidance",
    "width",
    "height",
    "seed",
    "max_sequence_length",
    "judge",
)


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)
    model = clean_model(params, "model", GENERATORS, errors)
    base = clean_model(params, "base_model", GENERATORS, errors, required=False)
    if model is not None and base is not None and model.pk == base.pk:
        errors["base_model"] = "must differ from model"
    scorer = scoring.clean_scorer(params, "scorer", errors)
    judge = clean_model(params, "judge", (ModelVersion.Kind.JUDGE,), errors, required=False)
    tasks = _clean_tasks(params.get("tasks"), errors)
    version = clean_dataset_version(params, errors)
    if version is not None and "split" in cleaned and not decided_members(version, cleaned["split"], tasks).exists():
        errors["dataset_version"] = f"dataset version {version.name} has no decided pairs in {cleaned['split']}" + (
            f" of tasks {', '.join(tasks)}" if tasks else ""
        )
    if errors:
        raise RunParamsError(errors)
    assert model is not None and version is not None and scorer is not None  # else errors named them
    return {
        **cleaned,
        "model": model.pk,
        "dataset_version": version.pk,
        "scorer": scorer.pk,
        "base_model": base.pk if base else None,
        "tasks": tasks,
        "judge": judge.pk if judge else None,
    }, model


def _clean_tasks(value, errors: dict) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        errors["tasks"] = "must be a list of task codes"
        return []
    codes = sorted(set(value))
    unknown = sorted(set(codes) - set(Task.objects.filter(code__in=codes).values_list("code", flat=True)))
    if unknown:
        errors["tasks"] = f"no tasks {', '.join(unknown)}"
    return codes


# --- running -------------------------------------------------------------------------------


def metrics_key(run: Run, version: DatasetVersion) -> str:
    """Where the summary goes in a model's registry metrics."""
    p = run.params
    return f"eval:{version.name}:{p['split']}" + (f":{'+'.join(p['tasks'])}" if p["tasks"] else "")


def earlier_evaluation(run: Run, model: ModelVersion) -> dict | None:
    """The newest evaluation of ``model`` by another succeeded run with the same :data:`SAME_SCORES`."""
    settings = {name: run.params[name] for name in SAME_SCORES}
    candidates = (
        Run.objects.filter(kind=Run.Kind.EVAL_GENERATOR, status=Run.Status.SUCCEEDED)
        .exclude(pk=run.pk)
        .order_by("-finished_at", "-id")
    )
    for earlier in candidates.filter(input_model=model):
        if all(earlier.params.get(name) == value for name, value in settings.items()):
            return earlier.artifacts.get("evaluation")
    for earlier in candidates.filter(params__base_model=model.pk):
        if all(earlier.params.get(name) == value for name, value in settings.items()):
            return earlier.artifacts.get("base_evaluation")
    return None


def _records(run: Run) -> list[PromptTriple]:
    found = PromptTuple.objects.select_related("task__discipline").in_bulk(run.artifacts["tuples"])
    return [
        PromptTriple(
            t.implicit_prompt,
            t.explicit_prompt,
            t.superficial_prompt,
            t.task.code if t.task else "",
            t.task.discipline.name if t.task else "",
            t.scene_scoring,
            t.real_scoring,
        )
        for t in (found.get(pk) for pk in run.artifacts["tuples"])
        if t is not None
    ]


def _read_chunks(path) -> dict[int, list[dict]]:
    """``{first tuple index: rows}`` of the chunks saved so far (a line cut by a crash is ignored)."""
    chunks = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                chunk = json.loads(line)
            except ValueError:
                continue
            chunks[chunk["start"]] = chunk["rows"]
    return chunks


def evaluate(
    run: Run,
    ctx: RunContext,
    label: str,
    model: ModelVersion,
    scorer,
    records: list,
    span: tuple[float, float],
    base: dict | None = None,
    grader=None,
) -> dict:
    """Generate and score ``records`` with ``model`` chunk by chunk (resumable); the summary. ``grader``:
    the rubric protocol's (:func:`rubric_grader`), or None."""
    from ml.core.eval_generator import evaluate_generator
    from ml.core.generate import load_pipeline

    p = run.params
    path = ctx.work_dir / f"{label}.jsonl"
    chunks = _read_chunks(path)
    starts = range(0, len(records), CHUNK)
    todo = [start for start in starts if start not in chunks]
    if len(todo) < len(starts):
        ctx.log(f"{label} {model.name}: {len(starts) - len(todo)} of {len(starts)} chunks done before; resuming")
    if todo:
        pipeline, lora = pipeline_paths(model)
        ctx.progress(phase=f"loading the {label} model")
        pipe = load_pipeline(pipeline, lora=lora)
        ctx.progress(phase=f"generating and scoring with the {label} model")
        n = p["images_per_prompt"]
        for start in todo:
            ctx.check_cancelled()
            result = evaluate_generator(
                pipe,
                scorer,
                records[start : start + CHUNK],
                images_per_prompt=n,
                seed=p["seed"] + start * n,
                steps=p["steps"],
                guidance=p["guidance"],
                width=p["width"],
                height=p["height"],
                batch_size=p["batch_size"],
                max_sequence_length=p["max_sequence_length"],
                model_name=model.name,
                grader=grader,
                keep_image=_image_keeper(run, label, start),
            )
            rows = [{**row, "tuple": row["tuple"] + start} for row in result["generations"]]
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"start": start, "rows": rows}) + "\n")
            chunks[start] = rows
            ctx.progress(span[0] + (span[1] - span[0]) * len(chunks) / len(starts))
        del pipe
        scoring.free_device_memory()
    rows = [row for start in sorted(chunks) for row in chunks[start]]
    _publish_rows(run, label, rows)
    summary = summarize(rows, base)
    summary.update(
        model=model.pk, name=model.name, generations=str(path), settings={name: p[name] for name in SAME_SCORES}
    )
    overall = summary["groups"].get("overall", {})
    ctx.log(
        f"{label} {model.name}: "
        + ", ".join(f"{k} {_fmt(overall.get(k))}" for k in (*PROMPT_KINDS, "ND", "RI", "reality") if k in overall)
    )
    return summary


def image_name(run_id: int, label: str, tuple_index: int, kind: str, n: int) -> str:
    """Where an evaluation keeps one generated image in the media storage (``label``: model or base)."""
    return f"evaluations/run-{run_id}/{label}/{tuple_index:05d}-{kind}-{n}.png"


def rows_name(run_id: int, label: str) -> str:
    """Where an evaluation's generation rows (prompt, seed, scores, grade, image) lie in the media storage."""
    return f"evaluations/run-{run_id}/{label}/generations.json"


def _publish_rows(run: Run, label: str, rows: list[dict]) -> None:
    """The rows, for the pages that browse the images (the work directory is the workers' alone)."""
    name = rows_name(run.pk, label)
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(json.dumps(rows).encode()))


def _image_keeper(run: Run, label: str, start: int):
    """Stores the images ``keep_images`` asks for (none, the implicit prompt's, or all), PNG; None: none."""
    keep = run.params.get("keep_images", "none")
    if keep == "none":
        return None

    def keep_image(kind: str, index: int, n: int, image) -> str | None:
        if keep == "ip" and kind != "IP":
            return None
        name = image_name(run.pk, label, start + index, kind, n)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        if default_storage.exists(name):  # a chunk redone after a lost worker: replace, never "name_x7a.png"
            default_storage.delete(name)
        return default_storage.save(name, ContentFile(buffer.getvalue()))

    return keep_image


def rubric_grader(backend):
    """The rubric protocol (:func:`ml.core.judges.protocol.grade_images`) as ``evaluate_generator``'s grader:
    ``[(record, image)]`` in, ``[{"reality": 0..3 or None, "rubric": status}]`` out."""
    from ml.core.judges.protocol import RubricItem, grade_images

    def grade(items: list) -> list[dict]:
        verdicts = grade_images(
            backend,
            [
                RubricItem(str(n), record.implicit_prompt, record.scene_scoring, record.real_scoring, image)
                for n, (record, image) in enumerate(items)
            ],
        )
        return [{"reality": v.score, "rubric": v.status} for v in verdicts]

    return grade


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _registry_summary(run: Run, summary: dict, base_model: int | None) -> dict:
    keep = (*PROMPT_KINDS, "ND", "RI", "reality")
    return {
        "run": run.pk,
        "scorer": run.params["scorer"],
        "base_model": base_model,
        "groups": {
            name: {k: v for k, v in metrics.items() if k in keep} for name, metrics in summary["groups"].items()
        },
    }


def handle(run: Run, ctx: RunContext) -> None:
    p, art = run.params, run.artifacts
    version = DatasetVersion.objects.get(pk=p["dataset_version"])
    if "tuples" not in art:
        art["tuples"] = [t.pk for t in split_tuples(version, p["split"], p["tasks"])]
        ctx.save_artifacts()
    records = _records(run)
    if not records:
        raise ValueError(f"no tuples of {version.name} {p['split']} are left to evaluate")
    ctx.log(f"{len(records)} tuples of {version.name} {p['split']} x {p['images_per_prompt']} images per prompt")
    scorer_model = ModelVersion.objects.get(pk=p["scorer"])
    ctx.progress(phase="loading the scorer")
    scorer = scoring.load_scorer(scorer_model.location, scorer_model)
    key = metrics_key(run, version)
    grader, backend = None, None
    if p.get("judge") is not None:
        from ml.services import judges

        judge = ModelVersion.objects.get(pk=p["judge"])
        ctx.progress(phase=f"loading the judge {judge.name}")
        backend = judges.open_backend(judge)
        grader = rubric_grader(backend)
        ctx.log(f"the LMM judge {judge.name} grades the implicit-prompt images with the tuples' rubrics")
    try:
        _evaluate_all(run, ctx, version, scorer, records, key, grader)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def _evaluate_all(run: Run, ctx: RunContext, version, scorer, records: list, key: str, grader) -> None:
    p, art = run.params, run.artifacts

    base_summary, span = None, (0.0, 1.0)
    if p["base_model"] is not None:
        base = ModelVersion.objects.get(pk=p["base_model"])
        if "base_evaluation" not in art:
            art["base_evaluation"] = earlier_evaluation(run, base)
            if art["base_evaluation"] is not None:
                ctx.log(f"base {base.name}: reusing the evaluation of run {art['base_evaluation']['run']}")
            else:
                evaluation = {
                    **evaluate(run, ctx, "base", base, scorer, records, (0.0, 0.5), grader=grader),
                    "run": run.pk,
                }
                art["base_evaluation"] = evaluation
                merge_model_metrics(base, key, _registry_summary(run, evaluation, None), run=run)
            ctx.save_artifacts()
        base_summary = art["base_evaluation"]
        if base_summary["run"] == run.pk:
            span = (0.5, 1.0)

    model = run.input_model
    assert model is not None, "a started run of this kind has an input model"
    summary = {
        **evaluate(run, ctx, "model", model, scorer, records, span, base_summary, grader=grader),
        "run": run.pk,
    }
    art["evaluation"] = summary
    ctx.save_artifacts()
    ctx.set_metrics([{"group": name, **metrics} for name, metrics in summary["groups"].items()])
    merge_model_metrics(model, key, _registry_summary(run, summary, p["base_model"]), run=run)

"""``score_pairs`` runs: a scorer's SciScores for the pairs waiting for judgements (active learning).

Per pair, under its implicit prompt: ``score_correct`` = s(IP, expected-correct image) and
``score_wrong`` = s(IP, expected-wrong image). The scores already carry the scorer's logit scale,
so the softmax over the two is ``p = sigmoid(score_correct - score_wrong)``, the probability that
the expected image is preferred; ``uncertainty = 1 - |2p - 1|`` and ``disagrees = p < 0.5``.

Pairs are read in id order, ``batch_size`` at a time; each batch's :class:`~ml.models.PairScore`
rows are upserted in one statement, and pairs this model has already scored are never selected,
so a redelivered run carries on where the last delivery stopped and a repeated run scores only new
pairs. A pair whose image cannot be read is logged and left unscored. Finally the queue priorities
of the selected tasks are recomputed (:func:`ml.services.active_learning.recompute_priorities`;
they follow the *active* scorer, so scoring with another model leaves them as they are).
"""

from __future__ import annotations

import io
import time

from django.core.files.storage import default_storage
from django.db.models import Avg, Count, Exists, OuterRef, Q
from PIL import Image as PILImage

from annotation.models import Pair, Task
from ml.models import ModelVersion, PairScore, Run
from ml.services import active_learning
from ml.services.runs import scoring
from ml.services.runs.context import RunContext
from ml.services.runs.params import Bool, Int, Ref, RunParamsError, clean_fields, refuse_unknown

SCHEMA = {
    "only_open": Bool(True),
    "batch_size": Int(32, 1, 4096),
}
REFS = {
    "model": Ref(
        "model", required=False, model_kinds=(ModelVersion.Kind.SCORER,), help="the scorer (default: the active scorer)"
    ),
    "tasks": Ref("tasks", required=False, help="task codes (default: every task)"),
}
SCORE_FIELDS = ["score_correct", "score_wrong", "probability", "uncertainty", "disagrees", "run"]


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)
    model = scoring.clean_scorer(params, "model", errors)
    cleaned["model"] = model.pk if model is not None else None
    cleaned["tasks"] = clean_tasks(params.get("tasks"), errors)
    if errors:
        raise RunParamsError(errors)
    return cleaned, model


def clean_tasks(value, errors: dict) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(code, str) for code in value):
        errors["tasks"] = "must be a non-empty list of task codes"
        return None
    codes = list(dict.fromkeys(code.strip().upper() for code in value))
    missing = sorted(set(codes) - set(Task.objects.filter(code__in=codes).values_list("code", flat=True)))
    if missing:
        errors["tasks"] = f"no task(s) {', '.join(missing)}"
    return codes


def pending(params: dict, model: ModelVersion):
    """The pairs the run scores: of the selected tasks, open and not gold (``only_open``), not yet
    scored by ``model``."""
    pairs = Pair.objects.filter(~Exists(PairScore.objects.filter(pair=OuterRef("pk"), model=model)))
    if params["tasks"]:
        pairs = pairs.filter(tuple__task__code__in=params["tasks"])
    if params["only_open"]:
        pairs = pairs.filter(status=Pair.Status.OPEN, is_gold=False)
    return pairs


def handle(run: Run, ctx: RunContext) -> None:
    p, model = run.params, run.input_model
    assert model is not None, "a started run of this kind has an input model"
    pairs = pending(p, model)
    total = pairs.count()
    ctx.log(f"{total} pairs to score with {model.name}")
    if total:
        ctx.progress(phase="loading the model and scoring pairs")
        _score_all(run, ctx, pairs, total)
        scoring.free_device_memory()
    tasks = None if not p["tasks"] else list(Task.objects.filter(code__in=p["tasks"]).values_list("id", flat=True))
    changed = active_learning.recompute_priorities(tasks)
    summary = PairScore.objects.filter(run=run).aggregate(
        scored=Count("id"), disagreements=Count("id", filter=Q(disagrees=True)), mean_uncertainty=Avg("uncertainty")
    )
    run.artifacts.update(model=model.pk, priorities_changed=changed, **summary)
    ctx.save_artifacts()
    if summary["scored"]:
        ctx.log(
            f"scored {summary['scored']} pairs: the scorer prefers the expected-wrong image on "
            f"{summary['disagreements']}; mean uncertainty {summary['mean_uncertainty']:.3f}"
        )
    ctx.log(
        f"queue priorities changed on {changed} pairs"
        + ("" if model.is_active else f" ({model.name} is not the active scorer: they follow the active one)")
    )


def _score_all(run: Run, ctx: RunContext, pairs, total: int) -> None:
    model, batch_size = run.input_model, run.params["batch_size"]
    assert model is not None, "a started run of this kind has an input model"
    scorer = scoring.load_scorer(model.location, model)
    selected = pairs.select_related("tuple", "image_correct", "image_wrong").order_by("id")
    last, done, number = 0, 0, 0
    while batch := list(selected.filter(id__gt=last)[:batch_size]):
        ctx.check_cancelled()
        started = time.monotonic()
        last, number, done = batch[-1].pk, number + 1, done + len(batch)
        readable = [(pair, images) for pair in batch if (images := pair_images(ctx, pair)) is not None]
        rows = _scores(scorer, run, readable, batch_size)
        PairScore.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["pair", "model"], update_fields=SCORE_FIELDS
        )
        if len(readable) < len(batch):
            run.artifacts["unreadable"] = run.artifacts.get("unreadable", 0) + len(batch) - len(readable)
            ctx.save_artifacts()
        ctx.metric({"batch": number, "pairs": len(rows), "seconds": round(time.monotonic() - started, 3)})
        ctx.progress(0.95 * min(1.0, done / total))


def pair_images(ctx: RunContext, pair: Pair) -> tuple[PILImage.Image, PILImage.Image] | None:
    """The pair's (expected-correct, expected-wrong) images from storage, or None (logged) if one cannot be read."""
    try:
        return _open(pair.image_correct.file.name), _open(pair.image_wrong.file.name)
    except (OSError, ValueError) as exc:
        ctx.log(f"pair {pair.pk}: an image cannot be read ({exc}); not scored")
        return None


def _open(name: str | None) -> PILImage.Image:
    if not name:
        raise ValueError("the image has no file")
    with default_storage.open(name, "rb") as handle:
        image = PILImage.open(io.BytesIO(handle.read()))
        image.load()
    return image


def _scores(scorer, run: Run, items: list, batch_size: int) -> list[PairScore]:
    import torch

    if not items:
        return []
    prompts = [pair.tuple.implicit_prompt for pair, _ in items]
    correct, wrong = scorer.score_pairs(
        prompts, [images[0] for _, images in items], [images[1] for _, images in items], batch_size=batch_size
    )
    probability = torch.sigmoid(correct - wrong)
    return [
        PairScore(
            pair=pair,
            model=run.input_model,
            run=run,
            score_correct=c,
            score_wrong=w,
            probability=pr,
            uncertainty=1.0 - abs(2.0 * pr - 1.0),
            disagrees=pr < 0.5,
        )
        for (pair, _), c, w, pr in zip(items, correct.tolist(), wrong.tolist(), probability.tolist(), strict=True)
    ]

"""``judge_pairs`` runs: an LMM judge's opinion of the pairs waiting for judgements (active learning, review).

``score_pairs`` asks a scorer about the pending pairs; this kind asks an LMM judge the same question with
the pairwise protocol, in both image orders (:func:`ml.services.runs.eval_judge.judge_with_lmm`). Nobody has
decided these pairs yet, so there is no score: each pair gets a :class:`~ml.models.JudgedItem` (``split``
empty) whose ``prefers_expected`` is the share of the judge's readable answers that picked the *expected*
image (None when none could be read).

These opinions feed two places: the queue's ``judge_disagreement`` order (:mod:`ml.services.active_learning`,
recomputed at the end of the run for the selected tasks) and the advisory opinions a reviewer may open on
the adjudication page (:func:`ml.queries.pair_opinions`). Pairs this judge already gave an opinion on are
never selected again, so a redelivered run carries on where it stopped and a repeated run asks only about
new pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotation.models import Pair, Task
from ml.models import JudgedItem, ModelVersion, Run
from ml.services import active_learning, judges
from ml.services.runs.context import RunContext
from ml.services.runs.eval_judge import judge_with_lmm
from ml.services.runs.params import Bool, Int, Ref, RunParamsError, clean_fields, clean_model, refuse_unknown
from ml.services.runs.score_pairs import clean_tasks

SCHEMA = {
    "only_open": Bool(True),
    "cot": Bool(False),
    "batch_size": Int(16, 1, 1024),
    "max_pairs": Int(0, 0, 1_000_000),
}
REFS = {
    "model": Ref("model", model_kinds=(ModelVersion.Kind.JUDGE,), help="the LMM judge to ask"),
    "tasks": Ref("tasks", required=False, help="task codes (default: every task)"),
}


@dataclass(frozen=True)
class Target:
    """A pending pair as :func:`judge_with_lmm` reads it: the expected image stands as the right one."""

    pair: Pair
    label: str = "expected"
    split: str = ""

    @property
    def pair_id(self) -> int:
        return self.pair.pk


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)
    model = clean_model(params, "model", (ModelVersion.Kind.JUDGE,), errors)
    cleaned["tasks"] = clean_tasks(params.get("tasks"), errors)
    if model is not None and not errors:
        n = pending(cleaned, model).count()
        n = min(n, cleaned["max_pairs"]) if cleaned["max_pairs"] else n
        if refusal := judges.over_budget(model, n, "max_pairs"):
            errors["model"] = refusal
    if errors:
        raise RunParamsError(errors)
    assert model is not None
    return {**cleaned, "model": model.pk}, model


def pending(params: dict, model: ModelVersion):
    """The pairs the run asks about: of the selected tasks, open and not gold (``only_open``), with no opinion
    of ``model`` yet."""
    asked = JudgedItem.objects.filter(run__input_model=model, split="").values("pair_id")
    pairs = Pair.objects.exclude(pk__in=asked)
    if params["tasks"]:
        pairs = pairs.filter(tuple__task__code__in=params["tasks"])
    if params["only_open"]:
        pairs = pairs.filter(status=Pair.Status.OPEN, is_gold=False)
    return pairs


def handle(run: Run, ctx: RunContext) -> None:
    p, model = run.params, run.input_model
    assert model is not None, "a started run of this kind has an input model"
    pairs = pending(p, model).select_related("tuple", "image_correct", "image_wrong").order_by("id")
    if p["max_pairs"]:
        already = JudgedItem.objects.filter(run=run).count()
        pairs = pairs[: max(0, p["max_pairs"] - already)]
    targets = [Target(pair) for pair in pairs]
    ctx.log(f"{len(targets)} pairs to ask {model.name} about")
    if targets:
        judge_with_lmm(run, ctx, model, targets, len(targets), 0, labelled=False)
    tasks = None if not p["tasks"] else list(Task.objects.filter(code__in=p["tasks"]).values_list("id", flat=True))
    changed = active_learning.recompute_priorities(tasks)
    opinions = JudgedItem.objects.filter(run=run)
    run.artifacts.update(
        model=model.pk,
        asked=opinions.count(),
        unreadable=opinions.filter(prefers_expected__isnull=True).count(),
        priorities_changed=changed,
    )
    ctx.save_artifacts()
    ctx.log(
        f"{run.artifacts['asked']} pairs asked, {run.artifacts['unreadable']} without a readable answer; "
        f"queue priorities changed on {changed} pairs"
    )

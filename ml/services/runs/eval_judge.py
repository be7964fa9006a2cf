"""``eval_judge`` runs: two-choice accuracy of any judge on a frozen dataset version's splits.

The judge is a registered scorer (SciScore, or the CLIP it started from, registered as a scorer) or an LMM
judge (:mod:`ml.services.judges`). The items are the version's members in ``splits`` whose label names one
of the two images (``expected``: the pair's expected image is right; ``other``: the other one is); members
labelled both/neither are no two-choice item and are left out, as the Science-T2I export leaves them out.

* A **scorer** is right on an item when s(IP, right image) > s(IP, wrong image) (strict, as in
  :mod:`ml.core.evaluate`: a tie is wrong).
* An **LMM judge** is asked with the pairwise protocol (:mod:`ml.core.judges.protocol`, its template version
  stored in the artifacts), in both image orders; the item's score is the share of its readable answers that
  picked the right image (0, 0.5 or 1). An item with no readable answer is *unscored*: counted and reported,
  never taken as right or wrong.

Each chunk's verdicts are written as :class:`~ml.models.JudgedItem` rows before the next chunk starts, so a
redelivered run judges only what is left and a cancelled run stops between chunks. At the end the run's
artifacts hold, per split, the accuracy with n and a 95 % bootstrap interval overall and per discipline,
task and task kind (:func:`ml.core.stats.breakdown`), plus the parse report of an LMM judge; the model's
registry metrics get each split's overall figures under ``judge:<version name>`` (``:cot`` appended for an
LMM asked to reason first). The leaderboard (:mod:`ml.leaderboard`) reads the artifacts.

Parameters: ``cot`` (LMM judges: reasoning before the answer), ``max_items`` (at most this many items per
split, the first by pair id; 0: all), ``batch_size`` (items per chunk).
"""

from __future__ import annotations

from curation.models import DatasetVersion, Label, VersionMember
from ml.models import JudgedItem, ModelVersion, Run
from ml.services import judges
from ml.services.runs import scoring
from ml.services.runs.artifacts import merge_model_metrics
from ml.services.runs.context import RunContext
from ml.services.runs.params import (
    Bool,
    Int,
    Ref,
    RunParamsError,
    clean_dataset_version,
    clean_fields,
    clean_model,
    refuse_unknown,
)
from ml.services.runs.score_pairs import pair_images

JUDGE_KINDS = (ModelVersion.Kind.SCORER, ModelVersion.Kind.JUDGE)
TWO_CHOICE = (Label.EXPECTED, Label.OTHER)
SCORER_PROTOCOL = "scorer-margin"  # what a scorer's verdict is: the sign of s(IP, right) - s(IP, wrong)
SCHEMA = {
    "splits": scoring.Splits(("test_S", "test_C"), scoring.EVAL_SPLITS),
    "cot": Bool(False),
    "batch_size": Int(16, 1, 1024),
    "max_items": Int(0, 0, 1_000_000),
}
REFS = {
    "model": Ref(
        "model",
        required=False,
        model_kinds=JUDGE_KINDS,
        help="the scorer or LMM judge to evaluate (default: the active scorer)",
    ),
    "dataset_version": Ref("dataset_version", help="a frozen version: its members' labels are the answers"),
}


def validate(params: dict) -> tuple[dict, ModelVersion | None]:
    errors: dict[str, str] = {}
    refuse_unknown(params, [*SCHEMA, *REFS], errors)
    cleaned = clean_fields(params, SCHEMA, errors)
    version = clean_dataset_version(params, errors)
    if params.get("model") is None:
        model = scoring.clean_scorer(params, "model", errors)
    else:
        model = clean_model(params, "model", JUDGE_KINDS, errors)
    if version is not None and "splits" in cleaned and "max_items" in cleaned:
        n = sum(len(ids) for ids in item_ids(version, cleaned["splits"], cleaned["max_items"]).values())
        if not n:
            errors["dataset_version"] = (
                f"dataset version {version.name} has no two-choice members in {', '.join(cleaned['splits'])}"
            )
        elif model is not None and (refusal := judges.over_budget(model, n, "max_items")):
            errors["model"] = refusal
    if errors:
        raise RunParamsError(errors)
    assert version is not None and model is not None  # else errors named them
    return {**cleaned, "model": model.pk, "dataset_version": version.pk}, model


def item_ids(version: DatasetVersion, splits, max_items: int) -> dict[str, list[int]]:
    """The pair ids judged per split: two-choice members in pair id order, the first ``max_items`` (0: all)."""
    found: dict[str, list[int]] = {split: [] for split in splits}
    members = VersionMember.objects.filter(version=version, split__in=list(splits), label__in=TWO_CHOICE)
    for split, pair_id in members.order_by("split", "pair_id").values_list("split", "pair_id"):
        if not max_items or len(found[split]) < max_items:
            found[split].append(pair_id)
    return found


# --- running -------------------------------------------------------------------------------


def handle(run: Run, ctx: RunContext) -> None:
    p, model = run.params, run.input_model
    assert model is not None, "a started run of this kind has an input model"
    version = DatasetVersion.objects.get(pk=p["dataset_version"])
    ids = item_ids(version, p["splits"], p["max_items"])
    members = {
        m.pair_id: m
        for m in VersionMember.objects.filter(version=version, pair_id__in=[i for s in ids.values() for i in s])
        .select_related("pair__tuple", "pair__image_correct", "pair__image_wrong")
        .order_by("pair_id")
    }
    done = set(JudgedItem.objects.filter(run=run).values_list("pair_id", flat=True))
    todo = [members[i] for split in p["splits"] for i in ids[split] if i not in done]
    total = sum(len(s) for s in ids.values())
    ctx.log(
        f"{model.kind} {model.name} on {version.name}: "
        + ", ".join(f"{split} {len(ids[split])} items" for split in p["splits"])
        + (f"; {len(done)} judged before, resuming" if done else "")
    )
    protocol = SCORER_PROTOCOL
    if todo:
        ctx.progress(phase=f"loading {model.name}")
        if model.kind == ModelVersion.Kind.SCORER:
            _judge_with_scorer(run, ctx, model, todo, total, len(done))
        else:
            protocol = judge_with_lmm(run, ctx, model, todo, total, len(done))
    elif model.kind == ModelVersion.Kind.JUDGE:
        protocol = run.artifacts.get("protocol", "")
    summary = summarize(run, p["splits"])
    run.artifacts.update(dataset_version=version.pk, model=model.pk, protocol=protocol, cot=p["cot"], summary=summary)
    ctx.save_artifacts()
    ctx.set_metrics([{"split": split, **_overall(result)} for split, result in summary.items()])
    for split, result in summary.items():
        ctx.log(_summary_line(split, result))
    key = f"judge:{version.name}" + (":cot" if p["cot"] and model.kind == ModelVersion.Kind.JUDGE else "")
    merge_model_metrics(
        model, key, {"run": run.pk, **{split: _overall(result) for split, result in summary.items()}}, run=run
    )


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _readable(ctx: RunContext, members: list) -> list[tuple[VersionMember, tuple]]:
    """Each member with its pair's (right, wrong) images by the member's label; unreadable pairs are logged
    and stored as unscored items, so the run does not retry them forever."""
    readable, unreadable = [], []
    for member in members:
        images = pair_images(ctx, member.pair)
        if images is None:
            unreadable.append(
                JudgedItem(run=ctx.run, pair=member.pair, split=member.split, detail={"error": "unreadable image"})
            )
            continue
        expected, other = images
        readable.append((member, (expected, other) if member.label == Label.EXPECTED else (other, expected)))
    JudgedItem.objects.bulk_create(unreadable, ignore_conflicts=True)
    return readable


def _progress(ctx: RunContext, done: int, total: int) -> None:
    ctx.progress(0.02 + 0.95 * done / max(total, 1), phase="judging")


def _judge_with_scorer(run: Run, ctx: RunContext, model: ModelVersion, todo: list, total: int, done: int) -> None:
    scorer = scoring.load_scorer(model.location, model)
    size = run.params["batch_size"]
    for chunk in _chunks(todo, size):
        ctx.check_cancelled()
        readable = _readable(ctx, chunk)
        rows = []
        if readable:
            right, wrong = scorer.score_pairs(
                [m.pair.tuple.implicit_prompt for m, _ in readable],
                [images[0] for _, images in readable],
                [images[1] for _, images in readable],
                batch_size=size,
            )
            for (member, _), r, w in zip(readable, right.tolist(), wrong.tolist(), strict=True):
                score = 1.0 if r > w else 0.0
                expected_first = member.label == Label.EXPECTED
                prefers = 0.5 if r == w else (score if expected_first else 1.0 - score)
                rows.append(
                    JudgedItem(
                        run=run,
                        pair=member.pair,
                        split=member.split,
                        score=score,
                        prefers_expected=prefers,
                        detail={"score_right": r, "score_wrong": w},
                    )
                )
        JudgedItem.objects.bulk_create(rows, ignore_conflicts=True)
        done += len(chunk)
        _progress(ctx, done, total)
    del scorer
    scoring.free_device_memory()


def judge_with_lmm(
    run: Run, ctx: RunContext, model: ModelVersion, todo: list, total: int, done: int, *, labelled: bool = True
) -> str:
    """Ask the LMM judge ``model`` about ``todo`` (version members, or anything with ``pair``, ``pair_id``,
    ``label`` and ``split``) in both image orders, a chunk at a time, storing a :class:`~ml.models.JudgedItem`
    per pair; the protocol's name. ``labelled=False`` (pairs nobody has decided yet, ``judge_pairs``): only
    the opinion of the expected image is stored, and no score."""
    from ml.core.judges.backend import BudgetExhausted
    from ml.core.judges.protocol import PAIRWISE_TEMPLATE, PairItem, judge_pairs

    backend = judges.open_backend(model)
    protocol = f"{PAIRWISE_TEMPLATE}{'+cot' if run.params['cot'] else ''}"
    run.artifacts["protocol"] = protocol
    ctx.save_artifacts()
    size = run.params["batch_size"]
    try:
        for chunk in _chunks(todo, size):
            ctx.check_cancelled()
            readable = _readable(ctx, chunk)
            items = [
                PairItem(key=str(m.pair_id), implicit_prompt=m.pair.tuple.implicit_prompt, correct=im[0], wrong=im[1])
                for m, im in readable
            ]
            verdicts = judge_pairs(backend, items, cot=run.params["cot"], chunk=size) if items else []
            rows = []
            for (member, _), verdict in zip(readable, verdicts, strict=True):
                score = verdict.score
                expected_right = member.label == Label.EXPECTED
                prefers = None if score is None else (score if expected_right else 1.0 - score)
                detail = verdict.as_dict()
                detail.pop("key", None)
                rows.append(
                    JudgedItem(
                        run=run,
                        pair=member.pair,
                        split=member.split,
                        score=score if labelled else None,
                        prefers_expected=prefers,
                        detail=detail,
                    )
                )
            JudgedItem.objects.bulk_create(rows, ignore_conflicts=True)
            done += len(chunk)
            _progress(ctx, done, total)
    except BudgetExhausted as exc:
        raise RuntimeError(
            f"the request budget is spent after {done} of {total} items ({exc}); the items judged so far are kept, "
            "and a rerun with a larger budget judges the rest"
        ) from None
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
        scoring.free_device_memory()
    return protocol


# --- summaries -----------------------------------------------------------------------------


def summarize(run: Run, splits) -> dict:
    """Per split: :func:`ml.core.stats.breakdown` of the run's items by discipline, task and kind, plus the
    LMM parse report (items with no readable answer, answers that could not be read, first-image picks)."""
    from ml.core.stats import breakdown

    rows = JudgedItem.objects.filter(run=run).values(
        "split",
        "score",
        "detail",
        "pair__tuple__task__code",
        "pair__tuple__task__kind",
        "pair__tuple__task__discipline__name",
    )
    by_split: dict[str, list[dict]] = {split: [] for split in splits}
    for row in rows:
        by_split.setdefault(row["split"], []).append(
            {
                "score": row["score"],
                "task": row["pair__tuple__task__code"] or "",
                "kind": row["pair__tuple__task__kind"] or "",
                "discipline": row["pair__tuple__task__discipline__name"] or "",
                "detail": row["detail"],
            }
        )
    summary = {}
    for split, items in by_split.items():
        if not items:
            continue
        result = breakdown(items)
        result["parse"] = _parse_report(items)
        summary[split] = result
    return summary


def _parse_report(items: list[dict]) -> dict:
    orders = [order for item in items for order in (item["detail"].get("orders") or [])]
    answered = [o for o in orders if o.get("choice") is not None]
    return {
        "unscored_items": sum(1 for item in items if item["score"] is None),
        "unreadable_images": sum(1 for item in items if item["detail"].get("error") == "unreadable image"),
        "answers": len(orders),
        "unparsed_answers": sum(1 for o in orders if o.get("choice") is None and not o.get("error")),
        "request_errors": sum(1 for o in orders if o.get("error")),
        "first_image_share": (sum(1 for o in answered if o.get("choice") == 1) / len(answered)) if answered else None,
    }


def _overall(result: dict) -> dict:
    overall = result["overall"]
    return {"accuracy": overall["accuracy"], "n": overall["n"], "low": overall["low"], "high": overall["high"]}


def _summary_line(split: str, result: dict) -> str:
    o, parse = result["overall"], result["parse"]
    if o["accuracy"] is None:
        line = f"{split}: no item could be scored"
    else:
        line = f"{split} accuracy {o['accuracy']:.3f} (n={o['n']}, 95% CI {o['low']:.3f}-{o['high']:.3f})"
    if parse["unscored_items"]:
        line += f"; {parse['unscored_items']} items unscored ({parse['unparsed_answers']} answers unreadable)"
    return line

"""Evaluate a FLUX generator on Science-T2I tuples: SciScore of IP/EP/SP generations, ND and RI.

For every tuple, ``images_per_prompt`` images are generated from each of its implicit (IP), explicit
(EP) and superficial (SP) prompts, and **every image is scored against the implicit prompt** (GUIDE §1).
The three prompts of a tuple share seeds (image ``n`` of tuple ``i`` uses ``seed + i * N + n`` for
IP, EP and SP alike): paired noise, so the differences between them come from the prompts.

Metrics, per task and overall (overall = the mean over all images, so bigger tasks weigh more):

* ``IP``, ``EP``, ``SP``: mean score of the images generated from that prompt kind;
* ``ND = (IP − SP) / (EP − SP) × 100``: where the implicit generations fall between the wrong literal
  reading (0) and the explicitly described correct outcome (100);
* ``RI = (IP_finetuned − IP_base) / (EP_base − IP_base) × 100``, given the base model's result on the
  same tuples: the share of the base model's implicit-to-explicit gap that fine-tuning closed (the
  paper reports it in percent: FLUX.1-dev on S, 23.56 → 28.52, RI 53.4 %).

A denominator within ``EPS`` of zero (e.g. EP and SP generations scoring alike) makes the ratio
meaningless: the metric is ``None`` (JSON ``null``) and a note says why, rather than a huge number.

**The rubric protocol** (optional, ``grader``): an LMM judge grades every image generated from the
*implicit* prompt against its tuple's rubrics (:func:`ml.core.judges.protocol.grade_images`: the
``scene_scoring`` gate first, 0 if the scene is not shown, then ``real_scoring`` 0–3). Per group,
``reality`` is the normalised reality score ``mean(grade) / 3 × 100`` over the graded images, with
``reality_n`` graded and ``reality_unscored`` images whose grade could not be read (left out of the mean,
never counted as 0). EP and SP images are not graded: they exist for ND.

Groups: per task and ``overall`` under ``groups`` (as before), and per discipline under ``disciplines``
when the records carry one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

KINDS = ("IP", "EP", "SP")
EPS = 1e-6
OVERALL = "overall"


@dataclass(frozen=True)
class PromptTriple:
    """The three prompts of one tuple, its grouping keys and rubrics; :class:`science_t2i.format.TupleRecord`
    has the same attributes."""

    implicit_prompt: str
    explicit_prompt: str
    superficial_prompt: str
    task: str = ""
    discipline: str = ""
    scene_scoring: str = ""
    real_scoring: str = ""


def normalized_difference(ip: float, ep: float, sp: float, eps: float = EPS) -> float | None:
    """ND in percent, or ``None`` when ``|EP − SP| < eps``."""
    denominator = ep - sp
    return None if abs(denominator) < eps else (ip - sp) / denominator * 100


def relative_improvement(finetuned_ip: float, base_ip: float, base_ep: float, eps: float = EPS) -> float | None:
    """RI in percent, or ``None`` when ``|EP_base − IP_base| < eps``."""
    denominator = base_ep - base_ip
    return None if abs(denominator) < eps else (finetuned_ip - base_ip) / denominator * 100


def summarize(rows: Iterable[dict], base: dict | None = None, eps: float = EPS) -> dict:
    """Per-task, per-discipline and overall metrics from scored generations.

    ``rows`` are dicts with ``task``, ``kind`` (IP/EP/SP) and ``score`` (and ``discipline``, and for graded
    IP images ``reality``: 0–3 or None, see the module docstring); rows without a task are grouped under
    ``"?"``. ``base`` is an earlier ``summarize`` (or :func:`evaluate_generator`) result for the base model:
    with it, RI is added for every group present in both. Returns ``{"groups": {name: metrics},
    "disciplines": {name: metrics}, "notes": [...]}`` (``disciplines`` empty when no row has one).
    """
    rows = list(rows)
    by_task: dict[str, list[dict]] = defaultdict(list)
    by_discipline: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_task[row.get("task") or "?"].append(row)
        by_task[OVERALL].append(row)
        if row.get("discipline"):
            by_discipline[row["discipline"]].append(row)
    notes: list[str] = []
    groups = {
        name: _group_metrics(name, group, base, (base or {}).get("groups", {}), eps, notes)
        for name, group in by_task.items()
    }
    disciplines = {
        name: _group_metrics(name, group, base, (base or {}).get("disciplines", {}), eps, notes)
        for name, group in sorted(by_discipline.items())
    }
    return {
        "groups": dict(sorted(groups.items(), key=lambda kv: (kv[0] == OVERALL, kv[0]))),
        "disciplines": disciplines,
        "notes": notes,
    }


def _group_metrics(name: str, rows: list[dict], base: dict | None, base_groups: dict, eps: float, notes: list) -> dict:
    by_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    for row in rows:
        by_kind[row["kind"]].append(float(row["score"]))
    means = {k: sum(v) / len(v) if v else None for k, v in by_kind.items()}
    metrics = {**means, "n_images": {k: len(v) for k, v in by_kind.items()}, "ND": None}
    ip, ep, sp = means["IP"], means["EP"], means["SP"]
    if ip is not None and ep is not None and sp is not None:
        metrics["ND"] = normalized_difference(ip, ep, sp, eps)
        if metrics["ND"] is None:
            notes.append(f"{name}: ND undefined, EP and SP generations score alike (|EP - SP| < {eps}).")
    if base is not None:
        metrics["RI"] = _relative_improvement(name, means["IP"], base_groups.get(name), eps, notes)
    graded = [row for row in rows if row["kind"] == "IP" and "reality" in row]
    if graded:
        grades = [row["reality"] for row in graded if row["reality"] is not None]
        metrics["reality"] = sum(grades) / len(grades) / 3 * 100 if grades else None
        metrics["reality_n"] = len(grades)
        metrics["reality_unscored"] = len(graded) - len(grades)
    return metrics


def _relative_improvement(name: str, finetuned_ip, base_metrics: dict | None, eps: float, notes: list) -> float | None:
    if base_metrics is None or None in (finetuned_ip, base_metrics.get("IP"), base_metrics.get("EP")):
        notes.append(f"{name}: RI undefined, the base result has no IP and EP scores for it.")
        return None
    value = relative_improvement(finetuned_ip, base_metrics["IP"], base_metrics["EP"], eps)
    if value is None:
        notes.append(f"{name}: RI undefined, the base model's EP and IP generations score alike.")
    return value


def evaluate_generator(
    pipe,
    scorer,
    records: Sequence,
    *,
    images_per_prompt: int = 4,
    seed: int = 0,
    steps: int = 30,
    guidance: float = 3.5,
    width: int = 512,
    height: int = 512,
    batch_size: int = 4,
    max_sequence_length: int = 512,
    base: dict | None = None,
    model_name: str | None = None,
    grader: Callable[[list], list[dict]] | None = None,
    keep_image: Callable[[str, int, int, object], str | None] | None = None,
) -> dict:
    """Generate, score against the IP, summarise. ``records``: TupleRecords or :class:`PromptTriple` s.

    ``max_sequence_length`` is the T5 prompt length (FLUX.1-dev 512, schnell at most 256).
    Returns the :func:`summarize` result plus ``settings`` and ``generations`` (one row per image:
    tuple index, task, discipline, kind, prompt, seed, score), so every image can be regenerated exactly.

    ``grader`` (the rubric protocol) gets the implicit-prompt images as ``[(record, image), ...]`` and
    answers one dict per image (``reality``: 0–3 or None, ``rubric``: what became of it), merged into those
    rows. ``keep_image(kind, tuple index, n, image)`` may store an image and answer its name, kept in the
    row as ``image`` so the evaluation's images can be browsed.
    """
    from ml.core.generate import generate

    rows, model = [], model_name
    for kind, attribute in zip(KINDS, ("implicit_prompt", "explicit_prompt", "superficial_prompt"), strict=True):
        prompts, seeds, meta = [], [], []
        for index, record in enumerate(records):
            for n in range(images_per_prompt):
                prompts.append(getattr(record, attribute))
                seeds.append(seed + index * images_per_prompt + n)
                meta.append((index, record))
        images = generate(
            pipe,
            prompts,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            batch_size=batch_size,
            prompt_kind=kind,
            model_name=model_name,
            max_sequence_length=max_sequence_length,
        )
        model = images[0].model if images else model
        scores = scorer.score([record.implicit_prompt for _, record in meta], [g.image for g in images])
        new_rows = [
            {
                "tuple": index,
                "task": record.task,
                "discipline": getattr(record, "discipline", "") or "",
                "kind": kind,
                "prompt": g.prompt,
                "seed": g.seed,
                "score": float(score),
            }
            for (index, record), g, score in zip(meta, images, scores.tolist(), strict=True)
        ]
        if grader is not None and kind == "IP":
            grades = grader([(record, g.image) for (_, record), g in zip(meta, images, strict=True)])
            for row, grade in zip(new_rows, grades, strict=True):
                row.update(grade)
        if keep_image is not None:
            for row, ((index, _), g) in zip(new_rows, zip(meta, images, strict=True), strict=True):
                name = keep_image(kind, index, row["seed"] - seed - index * images_per_prompt, g.image)
                if name:
                    row["image"] = name
        rows += new_rows
    result = summarize(rows, base)
    result["settings"] = {
        "model": model,
        "images_per_prompt": images_per_prompt,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "width": width,
        "height": height,
        "max_sequence_length": max_sequence_length,
    }
    result["generations"] = rows
    return result

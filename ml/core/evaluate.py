"""Pairwise accuracy of a scorer on tuples: the share with s(IP, correct) > s(IP, wrong).

Ties count as wrong (strict ``>``, as in the Science-T2I paper and its evaluation code), so a constant
scorer gets 0, not 0.5. Results are broken down by task, discipline and kind (ST/CT); records without a
value for a grouping key count in the overall figures only, and ``warnings`` says so, with what the
``category``/``law`` columns held (``grouping``): a breakdown never comes out empty silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from science_t2i.format import TupleRecord, load_image

GROUP_KEYS = (("by_task", "task"), ("by_discipline", "discipline"), ("by_kind", "kind"))


def accuracy_by_group(margins: Sequence[float], records: Sequence[TupleRecord]) -> dict:
    """Accuracy from per-record margins ``s(IP, correct) - s(IP, wrong)``; a record is right iff margin > 0.

    Returns ``{"accuracy", "n", "by_task", "by_discipline", "by_kind"}``, each group ``{key: {"accuracy",
    "n"}}`` sorted by key. A NaN margin counts as wrong.
    """
    if len(margins) != len(records):
        raise ValueError(f"{len(margins)} margins but {len(records)} records.")
    if not records:
        raise ValueError("No records to evaluate.")
    hits = [float(m) > 0 for m in margins]
    result = _summary(hits)
    for name, attribute in GROUP_KEYS:
        groups: dict[str, list[bool]] = {}
        for record, hit in zip(records, hits, strict=True):
            key = getattr(record, attribute)
            if key:
                groups.setdefault(key, []).append(hit)
        result[name] = {key: _summary(groups[key]) for key in sorted(groups)}
    result["grouping"], result["warnings"] = _grouping_report(records, result)
    return result


def _grouping_report(records: Sequence[TupleRecord], result: dict) -> tuple[dict, list[str]]:
    """What the ``category``/``law`` columns held (counts per role, from ``extra["grouping"]``), and a
    warning for each breakdown that came out empty or partial, naming what the columns held instead: a
    breakdown is never empty without a word why."""
    held: dict[str, dict[str, int]] = {}
    examples: dict[tuple[str, str], str] = {}
    for record in records:
        for column, role in (record.extra.get("grouping") or {}).items():
            held.setdefault(column, {}).setdefault(role, 0)
            held[column][role] += 1
            value = record.extra.get(column)
            if isinstance(value, str) and value:
                examples.setdefault((column, role), value)
    described = (
        "; ".join(
            f"{column} held "
            + ", ".join(
                f"{role} ×{n}" + (f" (e.g. {examples[(column, role)]!r})" if (column, role) in examples else "")
                for role, n in sorted(roles.items())
            )
            for column, roles in sorted(held.items())
        )
        or "no category/law columns"
    )
    warnings = []
    for _name, label in (("by_task", "task"), ("by_discipline", "discipline")):
        missing = sum(1 for record in records if not getattr(record, label))
        if missing == len(records):
            warnings.append(f"no per-{label} figures: no record has a {label} ({described})")
        elif missing:
            warnings.append(
                f"{missing} of {len(records)} records have no {label} and count in the overall "
                f"figures only ({described})"
            )
    return held, warnings


def _summary(hits: list[bool]) -> dict:
    return {"accuracy": sum(hits) / len(hits), "n": len(hits)}


@torch.no_grad()
def pairwise_accuracy(scorer, records: Iterable[TupleRecord], batch_size: int = 64) -> dict:
    """Score every tuple's implicit prompt against its correct and its wrong image; summarise.

    Works through the records ``batch_size`` at a time, and only that chunk's images are decoded at once,
    so memory does not grow with the dataset. A scorer with ``score_pairs`` (:class:`~ml.core.scorer.Scorer`)
    scores a chunk's correct and wrong images in one pass, each prompt encoded once; otherwise the
    correct images go through ``scorer.score`` as one batch, then the wrong ones. Returns
    :func:`accuracy_by_group`'s dict plus ``mean_score_correct``, ``mean_score_wrong`` and ``mean_margin``.
    """
    records = list(records)
    correct_scores, wrong_scores = [], []
    pairs = getattr(scorer, "score_pairs", None)
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [r.implicit_prompt for r in chunk]
        if pairs is not None:
            correct, wrong = pairs(
                prompts,
                [load_image(r.correct_image) for r in chunk],
                [load_image(r.wrong_image) for r in chunk],
                batch_size=batch_size,
            )
            correct_scores.append(correct)
            wrong_scores.append(wrong)
            continue
        for scores, side in ((correct_scores, "correct_image"), (wrong_scores, "wrong_image")):
            images = [load_image(getattr(r, side)) for r in chunk]
            scores.append(scorer.score(prompts, images, batch_size=batch_size))
    correct = torch.cat(correct_scores) if records else torch.empty(0)
    wrong = torch.cat(wrong_scores) if records else torch.empty(0)
    margins = correct - wrong
    result = accuracy_by_group(margins.tolist(), records)
    result.update(
        mean_score_correct=correct.mean().item(),
        mean_score_wrong=wrong.mean().item(),
        mean_margin=margins.mean().item(),
    )
    return result

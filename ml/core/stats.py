"""Accuracy cells with 95 % bootstrap intervals, and their breakdown by discipline, task and task kind.

A *cell* of an accuracy table is the mean of per-item scores in 0..1 (1 right, 0 wrong for a two-choice
judge; a probability-like score is allowed), its ``n`` and a percentile bootstrap interval of the mean
(:func:`bootstrap_interval`, ``scipy.stats.bootstrap``). Decisions:

* **Percentile bootstrap**, 2000 resamples, 95 % by default: the paper's tables report plain accuracies,
  and the percentile interval stays inside ``[min, max]`` of the scores (never below 0 or above 1), where
  BCa warns or fails on the degenerate cells an accuracy table is full of (a task where everyone is right).
* **Degenerate cells answer without scipy**: no value gives no interval (``None``); one value, or values all
  equal, give ``(v, v)``: every resample has that mean, and scipy refuses a single observation.
* **Deterministic**: each cell resamples with ``numpy.random.default_rng(seed)``, so the same values and seed
  give the same interval, whatever else the table holds.
* **Memory**: resamples are drawn in batches of about four million values (``batch``), the same draws as
  one batch (scipy draws them in order), so a 20,000-item cell never allocates 40 million indices at once.

No Django here: :mod:`ml.services.humans` and the judges' evaluation feed it plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
BATCH_VALUES = 4_000_000  # resampled values held at once by one bootstrap batch
KEYS = ("discipline", "task", "kind")


def bootstrap_interval(
    values: Iterable[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of ``values`` at confidence ``level``; None when empty.

    One value or all-equal values give ``(v, v)`` (no resampling, no warning). The same values and
    ``seed`` always give the same interval."""
    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if data.size == 0:
        return None
    low, high = float(data.min()), float(data.max())
    if low == high:
        return low, high
    result = scipy_stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        batch=max(1, min(resamples, BATCH_VALUES // data.size)),
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def cell(values: Iterable[float], **kw: Any) -> dict:
    """``{"accuracy": mean, "n": count, "low": ..., "high": ...}`` of ``values``; ``kw`` goes to
    :func:`bootstrap_interval`. An empty cell has ``n`` 0 and None for the rest."""
    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    interval = bootstrap_interval(data, **kw)
    return {
        "accuracy": float(data.mean()) if data.size else None,
        "n": int(data.size),
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def _scores(raw: Sequence[Any]) -> np.ndarray:
    """The scores as floats (None → NaN), refusing anything outside 0..1."""
    scores = np.array([np.nan if value is None else float(value) for value in raw], dtype=float)
    scored = scores[~np.isnan(scores)]
    if scored.size and (scored.min() < 0 or scored.max() > 1):
        raise ValueError("scores must lie in 0..1 (None for an item that was not scored)")
    return scores


def _sort_key(name: Any) -> tuple[bool, str]:
    return name is None, str(name)


def breakdown(items: Iterable[Any], *, keys: Sequence[str] = KEYS, **kw: Any) -> dict:
    """Cells of ``items`` overall and per value of each key, plus how many items were not scored.

    Each item (a mapping or an object) has a ``score`` (0..1, None when not scored) and the ``keys``.
    Returns ``{"overall": cell, "by_<key>": {value: cell, ...} for each key, "unscored": int}``, each
    ``by_`` dict sorted by value. Unscored items count only in ``unscored``: a group whose items are all
    unscored is absent. ``kw`` goes to :func:`bootstrap_interval`."""
    rows = list(items)
    scores = _scores([_field(item, "score") for item in rows])
    scored = ~np.isnan(scores)
    values = scores[scored]
    result: dict[str, Any] = {"overall": cell(values, **kw)}
    for key in keys:
        names = [_field(item, key) for item, ok in zip(rows, scored, strict=True) if ok]
        groups: dict[Any, list[int]] = {}
        for index, name in enumerate(names):
            groups.setdefault(name, []).append(index)
        result[f"by_{key}"] = {
            name: cell(values[np.asarray(groups[name])], **kw) for name in sorted(groups, key=_sort_key)
        }
    result["unscored"] = int((~scored).sum())
    return result

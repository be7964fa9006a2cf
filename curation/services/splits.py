"""Leakage-free, deterministic split assignment for dataset versions. Pure functions, no database.

Rules (tested in tests/curation/test_splits.py):

* **Groups.** Tuples are grouped by :func:`group_key`: sha256 of the normalised implicit prompt,
  a unit separator (``"\\x1f"``) and the normalised subject. Every tuple of a group (and so every
  pair of those tuples) gets the same split, so no prompt/subject leaks from train into a test
  split. A tuple without a subject groups by its prompt alone.
* **Splits.** A group lands in ``train``, ``validation`` or a test split by the ratios
  ``{"train": t, "validation": v, "test": s}`` (non-negative, summing to 1). The test share goes
  to ``test_S`` for simple-scene groups and to ``test_C`` for complex-scene groups: the published
  Science-T2I ``test_C`` holds complex scenes and ``test_S`` simple ones, and our ratios apply
  *within* each scene type (so a 10 % test share means 10 % of the simple groups go to test_S and
  10 % of the complex groups to test_C). A group counts as complex if any of its tuples is.
* **Determinism and stability.** Each group draws its own uniform number in [0, 1) from
  ``sha256(seed, group_key)`` (:func:`uniform`) and is cut by the cumulative ratios. The draw
  depends on nothing but the seed and the group, so adding or removing other groups never moves
  a group, and the same inputs always give the same splits.
* **Inheritance.** A later version keeps the split its parent (or an earlier ancestor) gave a
  group it shares, whatever seed or ratios the later version uses: ``inherited`` assignments win
  over the draw, exactly as they were (a test group stays in the same test split even if its scene
  type changed since).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from annotation.models import normalise_prompt

TRAIN, VALIDATION, TEST_S, TEST_C = "train", "validation", "test_S", "test_C"
SPLITS = (TRAIN, VALIDATION, TEST_S, TEST_C)
SIMPLE, COMPLEX = "simple", "complex"
DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
RATIO_KEYS = ("train", "validation", "test")


class BadRatios(ValueError):
    """The ratios are not three non-negative shares summing to 1."""


def group_key(implicit_prompt: str, subject: str) -> str:
    """sha256 hex of the normalised implicit prompt + ``"\\x1f"`` + the normalised subject."""
    text = normalise_prompt(implicit_prompt or "") + "\x1f" + normalise_prompt(subject or "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def uniform(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the group key alone."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normalise_ratios(ratios) -> dict[str, float]:
    """``{"train", "validation", "test"}`` as floats from a mapping or a 3-sequence; BadRatios otherwise."""
    if isinstance(ratios, Mapping):
        if set(ratios) != set(RATIO_KEYS):
            raise BadRatios(f"ratios need exactly the keys {', '.join(RATIO_KEYS)}; got {', '.join(map(str, ratios))}")
        values = [ratios[key] for key in RATIO_KEYS]
    else:
        values = list(ratios)
        if len(values) != 3:
            raise BadRatios("ratios are three numbers: train, validation, test")
    try:
        values = [float(value) for value in values]
    except (TypeError, ValueError):
        raise BadRatios("ratios must be numbers") from None
    if any(not math.isfinite(value) or value < 0 for value in values):
        raise BadRatios("ratios must be finite and not negative")
    if abs(sum(values) - 1.0) > 1e-6:
        raise BadRatios(f"ratios must sum to 1 (they sum to {sum(values):g})")
    return dict(zip(RATIO_KEYS, values, strict=True))


def split_for(key: str, scene: str, ratios: Mapping[str, float], seed: int) -> str:
    """The split a fresh group gets (no inheritance)."""
    u = uniform(seed, key)
    if u < ratios["train"]:
        return TRAIN
    if u < ratios["train"] + ratios["validation"]:
        return VALIDATION
    return TEST_C if scene == COMPLEX else TEST_S


def assign_splits(
    groups: Mapping[str, str],
    ratios=DEFAULT_RATIOS,
    seed: int = 0,
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``{group_key: split}`` for ``groups`` (``{group_key: scene}``); ``inherited`` assignments win."""
    ratios = normalise_ratios(ratios)
    inherited = inherited or {}
    return {
        key: inherited[key] if key in inherited else split_for(key, scene, ratios, seed)
        for key, scene in groups.items()
    }


def group_scenes(rows) -> dict[str, str]:
    """``{group_key: scene}`` from ``(group_key, scene)`` rows; complex if any row of the group is."""
    scenes: dict[str, str] = {}
    for key, scene in rows:
        if scenes.get(key) != COMPLEX:
            scenes[key] = COMPLEX if scene == COMPLEX else SIMPLE
    return scenes

"""Synthetic Science-T2I tuples: deterministic, balanced, held-out pools truly unseen, right images right."""

import re
from collections import Counter

import numpy as np
import pytest

from ml.core.synthetic import COLOURS, POOLS, RUST, TASK_CODES, UNRIPE_GREEN, Pool, make_synthetic_split


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)


def share_near(image, rgb, tol=30) -> float:
    """Fraction of pixels within ``tol`` of ``rgb`` on every channel."""
    return float((np.abs(pixels(image) - np.array(rgb)).max(-1) <= tol).mean())


def test_it_is_deterministic_for_a_seed():
    a, b, c = (make_synthetic_split(seed, 12, "train") for seed in (3, 3, 4))
    for x, y in zip(a, b, strict=False):
        assert (x.implicit_prompt, x.explicit_prompt, x.superficial_prompt) == (
            y.implicit_prompt,
            y.explicit_prompt,
            y.superficial_prompt,
        )
        assert x.images()[0].tobytes() == y.images()[0].tobytes()
        assert x.images()[1].tobytes() == y.images()[1].tobytes()
    assert [x.implicit_prompt for x in a] != [x.implicit_prompt for x in c]


def test_it_balances_at_least_six_tasks_and_both_conditions():
    records = make_synthetic_split(0, 4 * len(TASK_CODES), "train")
    assert len(TASK_CODES) >= 6
    counts = Counter((r.task, r.extra["condition"]) for r in records)
    assert counts == Counter({(t, c): 2 for t in TASK_CODES for c in (0, 1)})
    for r in records:
        assert r.discipline and r.kind  # filled from the taxonomy
        assert r.implicit_prompt != r.explicit_prompt != r.superficial_prompt
        correct, wrong = r.images()
        assert correct.size == wrong.size == (64, 64)
        assert correct.tobytes() != wrong.tobytes()


@pytest.mark.parametrize("held_out", ["val", "test"])
def test_held_out_pools_use_subjects_and_colours_never_seen_in_training(held_out):
    train = POOLS["train"]
    train_subjects = {s for subjects in train.subjects.values() for s in subjects}
    words = re.compile(r"\b(" + "|".join(map(re.escape, train_subjects | set(train.colours))) + r")\b")
    records = make_synthetic_split(0, 120, held_out)

    assert {r.subject for r in records}.isdisjoint(train_subjects)
    assert {r.extra["colour"] for r in records}.isdisjoint(train.colours)
    for r in records:
        for prompt in (r.implicit_prompt, r.explicit_prompt, r.superficial_prompt):
            assert not words.search(prompt), prompt
    others = {"val": "test", "test": "val"}
    assert {r.subject for r in records}.isdisjoint(
        {s for subjects in POOLS[others[held_out]].subjects.values() for s in subjects}
    )


def test_the_correct_image_shows_what_the_implicit_prompt_implies():
    records = make_synthetic_split(0, 60, "train", size=32)
    for r in records:
        correct, wrong = r.images()
        condition = r.extra["condition"]
        if r.task == "RU":  # condition 1 = left in the rain: the rusty image is right
            rusty = correct if condition == 1 else wrong
            assert share_near(rusty, RUST) > 0.03 and share_near(rusty, RUST) > 3 * share_near(
                correct if condition == 0 else wrong, RUST
            )
        if r.task == "RI":  # condition 0 = unripe: the green fruit is right
            green = correct if condition == 0 else wrong
            other = wrong if condition == 0 else correct
            assert share_near(green, UNRIPE_GREEN) > share_near(other, UNRIPE_GREEN) + 0.03
        if r.task == "EL":  # condition 1 = no power: the dark screen is right
            dark = correct if condition == 1 else wrong
            lit = wrong if condition == 1 else correct
            assert share_near(dark, (14, 14, 20), 20) > share_near(lit, (14, 14, 20), 20) + 0.03


def test_it_takes_a_custom_pool():
    pool = Pool("mine", {"RI": ("quince",)}, ("magenta",))
    records = make_synthetic_split(1, 4, pool, tasks=("RI",), size=32)
    assert {r.subject for r in records} == {"quince"} and {r.split for r in records} == {"mine"}
    assert all("magenta" in r.explicit_prompt or "magenta" in r.superficial_prompt for r in records)
    assert "magenta" in COLOURS

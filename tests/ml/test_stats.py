"""ml.core.stats: bootstrap intervals of a mean, accuracy cells, and their breakdown by group."""

import time
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ml.core.stats import bootstrap_interval, breakdown, cell


def right_wrong(right: int, wrong: int) -> list[float]:
    return [1.0] * right + [0.0] * wrong


def test_the_interval_contains_the_mean_and_narrows_as_n_grows():
    widths = []
    for n in (20, 200, 2000):
        values = right_wrong(int(n * 0.7), n - int(n * 0.7))
        low, high = bootstrap_interval(values)
        assert low < np.mean(values) < high
        assert low >= 0 and high <= 1
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]  # ~ 1/sqrt(n): each step is sqrt(10) narrower


def test_the_interval_is_scipys_percentile_bootstrap_for_the_seed():
    values = np.random.default_rng(3).random(300)
    expected = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert bootstrap_interval(values, seed=7) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_a_wider_level_gives_a_wider_interval():
    values = right_wrong(60, 40)
    low90, high90 = bootstrap_interval(values, level=0.90)
    low99, high99 = bootstrap_interval(values, level=0.99)
    assert low99 < low90 and high90 < high99


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    values = list(np.random.default_rng(4).random(40))  # continuous: binary percentiles often coincide
    assert bootstrap_interval(values, seed=5) == bootstrap_interval(np.array(values), seed=5)
    assert bootstrap_interval(values, seed=5) != bootstrap_interval(values, seed=6)


def test_equal_values_and_a_single_value_give_a_zero_width_interval_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_interval([1.0] * 9) == (1.0, 1.0)
        assert bootstrap_interval([0.0] * 4) == (0.0, 0.0)
        assert bootstrap_interval([0.1] * 7) == (0.1, 0.1)  # not a mean's rounding of 0.1
        assert bootstrap_interval([0.3]) == (0.3, 0.3)
        assert cell([1.0]) == {"accuracy": 1.0, "n": 1, "low": 1.0, "high": 1.0}


def test_no_values_give_no_interval_and_an_empty_cell():
    assert bootstrap_interval([]) is None
    assert cell([]) == {"accuracy": None, "n": 0, "low": None, "high": None}


def test_a_cell_holds_the_mean_n_and_the_interval():
    values = right_wrong(3, 1)
    found = cell(values, seed=2)
    assert found["accuracy"] == 0.75 and found["n"] == 4
    assert (found["low"], found["high"]) == bootstrap_interval(values, seed=2)


ITEMS = [
    # (score, discipline, task, kind)
    (1.0, "Physics", "BU", "ST"),
    (0.0, "Physics", "BU", "ST"),
    (1.0, "Physics", "SO", "CT"),
    (None, "Physics", "SO", "CT"),
    (1.0, "Chemistry", "RU", "CT"),
    (1.0, "Chemistry", "RU", "CT"),
    (0.5, "Biology", "GR", "ST"),
    (None, "Biology", "WI", "CT"),  # its only item is unscored: WI is absent from by_task
]


def as_dicts(rows):
    return [dict(zip(("score", "discipline", "task", "kind"), row, strict=True)) for row in rows]


def test_the_breakdown_counts_each_group_and_leaves_unscored_items_out():
    found = breakdown(as_dicts(ITEMS), resamples=200)
    assert found["unscored"] == 2
    assert found["overall"]["n"] == 6 and found["overall"]["accuracy"] == pytest.approx(4.5 / 6)
    assert {name: (c["n"], c["accuracy"]) for name, c in found["by_discipline"].items()} == {
        "Biology": (1, 0.5),
        "Chemistry": (2, 1.0),
        "Physics": (3, pytest.approx(2 / 3)),
    }
    assert list(found["by_discipline"]) == ["Biology", "Chemistry", "Physics"]
    assert {name: c["n"] for name, c in found["by_task"].items()} == {"BU": 2, "GR": 1, "RU": 2, "SO": 1}
    assert list(found["by_task"]) == ["BU", "GR", "RU", "SO"]
    assert {name: (c["n"], c["accuracy"]) for name, c in found["by_kind"].items()} == {
        "CT": (3, 1.0),
        "ST": (3, 0.5),
    }
    assert found["by_kind"]["CT"]["low"] == found["by_kind"]["CT"]["high"] == 1.0


def test_each_grouping_sums_to_the_overall_n():
    rng = np.random.default_rng(0)
    items = [
        {"score": None if rng.random() < 0.05 else float(rng.random() < 0.6), "discipline": d, "task": t, "kind": k}
        for d, t, k in zip(
            rng.choice(["Physics", "Chemistry", "Biology"], 500),
            rng.choice(["BU", "RU", "SO", "GR", "EV"], 500),
            rng.choice(["ST", "CT"], 500),
            strict=True,
        )
    ]
    found = breakdown(items, resamples=100)
    for key in ("discipline", "task", "kind"):
        assert sum(c["n"] for c in found[f"by_{key}"].values()) == found["overall"]["n"]
    assert found["overall"]["n"] + found["unscored"] == 500


def test_objects_and_other_keys_work_like_dicts():
    class Item:
        def __init__(self, score, model):
            self.score, self.model = score, model

    found = breakdown([Item(1, "a"), Item(0, "a"), Item(1, "b")], keys=("model",), resamples=50)
    assert set(found) == {"overall", "by_model", "unscored"}
    assert found["by_model"]["a"]["accuracy"] == 0.5 and found["by_model"]["b"]["n"] == 1


def test_a_score_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="0..1"):
        breakdown([{"score": 1.5, "discipline": "Physics", "task": "BU", "kind": "ST"}])


def test_ten_thousand_items_break_down_in_a_few_seconds():
    rng = np.random.default_rng(1)
    items = [
        {"score": float(rng.random() < 0.7), "discipline": f"D{i % 3}", "task": f"T{i % 16:02}", "kind": f"K{i % 2}"}
        for i in range(10_000)
    ]
    started = time.perf_counter()
    found = breakdown(items)
    assert time.perf_counter() - started < 10  # ~1 s on a quiet 2-core box: 22 cells, 2000 resamples each
    assert len(found["by_task"]) == 16 and found["overall"]["n"] == 10_000

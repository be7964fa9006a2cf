"""Split assignment (curation.services.splits): grouped, deterministic, stable, inherited. No database."""

import collections

import pytest

from curation.services import splits


def synthetic_groups(n, *, start=0, complex_every=3):
    """``{group_key: scene}`` for n synthetic prompt/subject groups; every third one complex."""
    return {
        splits.group_key(f"An object number {i} left in the sun", f"object {i}"): (
            splits.COMPLEX if i % complex_every == 0 else splits.SIMPLE
        )
        for i in range(start, start + n)
    }


def test_it_keys_groups_by_normalised_prompt_and_subject():
    key = splits.group_key("An apple left out for weeks.", "Apple")
    assert key == splits.group_key("  an APPLE left out   for weeks ", "apple ")
    assert len(key) == 64
    assert key != splits.group_key("An apple left out for weeks.", "table")
    assert key != splits.group_key("An apple left out for days.", "apple")
    # The separator keeps prompt and subject apart: "a b" + "c" is not "a" + "b c".
    assert splits.group_key("a b", "c") != splits.group_key("a", "b c")


def test_it_puts_every_tuple_of_a_group_in_one_split():
    rows = [
        (splits.group_key("A nail in the rain for weeks", "nail"), "simple"),
        (splits.group_key("a nail in the rain for weeks.", "Nail"), "complex"),  # same group, other task
        (splits.group_key("Ice in a warm room", "ice"), "simple"),
    ]
    scenes = splits.group_scenes(rows)
    assert len(scenes) == 2
    assert scenes[rows[0][0]] == "complex"  # complex if any tuple of the group is
    for seed in range(50):
        assignment = splits.assign_splits(scenes, {"train": 0.2, "validation": 0.2, "test": 0.6}, seed)
        # one split per group key, so every tuple (row) of the group gets the same one
        assert {assignment[key] for key, _ in rows[:2]} == {assignment[rows[0][0]]}


def test_it_is_deterministic_for_a_seed():
    groups = synthetic_groups(300)
    first = splits.assign_splits(groups, splits.DEFAULT_RATIOS, seed=7)
    assert first == splits.assign_splits(dict(reversed(list(groups.items()))), splits.DEFAULT_RATIOS, seed=7)
    assert first != splits.assign_splits(groups, splits.DEFAULT_RATIOS, seed=8)


def test_it_keeps_existing_groups_where_they_were_when_groups_are_added_or_removed():
    groups = synthetic_groups(500)
    before = splits.assign_splits(groups, splits.DEFAULT_RATIOS, seed=3)
    more = {**groups, **synthetic_groups(500, start=500)}
    after = splits.assign_splits(more, splits.DEFAULT_RATIOS, seed=3)
    assert {key: after[key] for key in groups} == before
    fewer = dict(list(groups.items())[::2])
    assert splits.assign_splits(fewer, splits.DEFAULT_RATIOS, seed=3) == {key: before[key] for key in fewer}


def test_it_honours_the_ratios_within_each_scene_type():
    groups = synthetic_groups(1000)
    assignment = splits.assign_splits(groups, {"train": 0.7, "validation": 0.1, "test": 0.2}, seed=0)
    tally = collections.Counter(assignment.values())
    assert tally["train"] == pytest.approx(700, abs=60)
    assert tally["validation"] == pytest.approx(100, abs=35)
    simple = [key for key, scene in groups.items() if scene == "simple"]
    complex_ = [key for key, scene in groups.items() if scene == "complex"]
    test_s = sum(assignment[key] == "test_S" for key in simple)
    test_c = sum(assignment[key] == "test_C" for key in complex_)
    assert test_s == pytest.approx(0.2 * len(simple), abs=30)
    assert test_c == pytest.approx(0.2 * len(complex_), abs=25)
    # simple scenes never land in test_C, complex ones never in test_S
    assert not any(assignment[key] == "test_C" for key in simple)
    assert not any(assignment[key] == "test_S" for key in complex_)


def test_it_keeps_inherited_assignments_whatever_the_seed_or_ratios():
    groups = synthetic_groups(200)
    parent = splits.assign_splits(groups, splits.DEFAULT_RATIOS, seed=0)
    child_groups = {**groups, **synthetic_groups(100, start=200)}
    child = splits.assign_splits(
        child_groups, {"train": 0.0, "validation": 0.0, "test": 1.0}, seed=99, inherited=parent
    )
    assert {key: child[key] for key in groups} == parent
    assert {child[key] for key in child_groups if key not in groups} <= {"test_S", "test_C"}


@pytest.mark.parametrize(
    "ratios",
    [
        {"train": 0.8, "validation": 0.1},
        {"train": 0.8, "validation": 0.1, "test": 0.2},
        {"train": 1.1, "validation": -0.1, "test": 0.0},
        [0.5, 0.5],
        ["a", "b", "c"],
        [float("nan"), 0.5, 0.5],
    ],
)
def test_it_refuses_bad_ratios(ratios):
    with pytest.raises(splits.BadRatios):
        splits.normalise_ratios(ratios)


def test_it_accepts_ratios_as_a_sequence():
    assert splits.normalise_ratios([0.6, 0.2, 0.2]) == {"train": 0.6, "validation": 0.2, "test": 0.2}

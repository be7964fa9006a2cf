"""The keyword rules of annotation/task_rules.py that guess a prompt's task."""

import json
from collections import Counter
from pathlib import Path

import pytest

from annotation.task_rules import RULES, guess_task
from annotation.taxonomy import TASKS

PROMPTS_FILE = Path(__file__).resolve().parents[2] / "shared/data/reality_simple_300.json"

EXAMPLES = {
    "EL": ["A wall lamp without power.", "A powerless laser pointer.", "An unplugged fridge.",
           "A smartwatch without electricity, simple and realistic."],
    "GR": ["A spoon in a simple space without gravity.", "A pencil in zero gravity.", "Water in zero-gravity."],
    "RI": ["An unripe mango, simple and realistic.", "A premature persimmon.", "Raw, undeveloped red currants."],
    "LR": ["A potted fern kept in a dark room for weeks.", "A seedling grown without sunlight.",
           "A tulip kept in darkness for a month."],
    "WR": ["A rarely watered crocus.", "A lawn during a long drought.", "A cactus in dry soil, never watered."],
    "FR": ["A little copper sulfide powder burning on a surface.", "Barium powder ignites on a surface.",
           "A small dish with kerosene burns steadily."],
    "SO": ["A cup of water in a freezer environment.", "In an arctic environment, a bottle holding water.",
           "At minus tens of degrees Celsius, a cup holding juice."],
    "ME": ["A chocolate bar in summer outdoors.", "A wax candle in the desert.", "An ice cube on a heated pan.",
           "An ice cream cone at sixty degrees Celsius."],
    "EV": ["A jug of milk at hundreds of degrees Celsius.", "A pot of soup boiling for hours.",
           "A glass of tea heated to four hundred degrees."],
    "RU": ["An iron bowl exposed to oxygen for decades.", "A steel shovel left in the open air for a long time.",
           "A metal nail left outside in the rain for weeks.", "A steel bolt in a humid cellar for years."],
    "IM": ["A glass containing both water and petrol.", "A clear glass filled with vinegar and mercury.",
           "A jar of milk and vegetable oil.", "Oil and water in a bottle."],
    "AB": ["A drop of ink touches a napkin.", "A drop of tea touches a felt.", "Red dye spilled on a cotton towel."],
    "DI": ["A little bit red dye added to a glass of water.", "A little bit milk added to a glass of soda water.",
           "Blue ink dripped into a beaker of water.", "A spoon of sugar stirred into a cup of tea."],
    "BU": ["A transparent water-filled box holds a brick.", "A box filled with water holding a steel key.",
           "A cork floating in a bucket.", "A tank of water with a wooden log.",
           "A cork dropped into a glass of water."],
    "LI": ["A ceramic mug in an extremely humid, room-temperature setting.", "A metal can in a highly humid space.",
           "Condensation on a window.", "A cold can of soda on a table."],
    "SC": ["A maple tree in winter.", "A lilac bush during autumn.", "A peony during spring.",
           "A lavender during summer."],
}


@pytest.mark.parametrize(("task", "prompt"), [(t, p) for t, ps in EXAMPLES.items() for p in ps])
def test_it_guesses_the_task_from_keywords(task, prompt):
    assert guess_task(prompt) == task


def test_it_covers_every_seeded_task():
    assert {rule.task for rule in RULES} == {code for code, *_ in TASKS}


@pytest.mark.parametrize("prompt", ["A red apple on a table.", "A portrait of a cat.", ""])
def test_it_leaves_prompts_without_a_condition_unassigned(prompt):
    assert guess_task(prompt) is None


def test_it_matches_case_insensitively():
    assert guess_task("A WALL LAMP WITHOUT POWER") == "EL"


@pytest.mark.parametrize(
    ("prompt", "task", "why"),
    [
        ("A chocolate bar in summer outdoors.", "ME", "melting is tried before the seasons"),
        ("A birch tree in frosty winter.", "SC", "solidification needs a liquid subject"),
        ("A ceramic cup left in a humid room.", "LI", "humidity without a metal is condensation"),
        ("A drop of yellow dye touches a paper towel.", "AB", "absorption is tried before diffusion"),
        ("A wax candle in a simple space without gravity.", "GR", "the condition wins over the subject"),
        ("A potted chocolate cosmos kept in a dark room for weeks.", "LR", "a flower's name is not chocolate"),
        ("A realistic scene of a box filled with water holding a plastic dice.", "BU", "dice is not ice"),
    ],
)
def test_it_resolves_overlaps_by_rule_order(prompt, task, why):
    assert guess_task(prompt) == task, why


def test_it_guesses_the_declared_task_of_every_demo_prompt():
    from annotation.demo import DEMO_TUPLES

    assert [(d.task, d.implicit) for d in DEMO_TUPLES if guess_task(d.implicit) != d.task] == []


def test_it_assigns_nearly_every_prompt_of_the_reference_file_and_all_sixteen_tasks():
    prompts = [record["prompt"] for record in json.loads(PROMPTS_FILE.read_text())]
    counts = Counter(guess_task(p) for p in prompts)
    assert counts[None] <= 0.05 * len(prompts)
    assert set(counts) - {None} == {code for code, *_ in TASKS}

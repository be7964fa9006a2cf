"""The keyword rules of annotation/task_rules.py that guess a prompt's task."""

import json
import re
import time

import pytest

import annotation.task_rules as task_rules
from annotation.task_rules import RULES, Explanation, explain_task, guess_task
from annotation.taxonomy import TASKS
from tests.support.paths import DATA

# Hand-written implicit prompts labelled with their task, and everyday scenes that must stay unassigned.
PROMPTS = json.loads((DATA / "task_rules_prompts.json").read_text())
LABELLED = [(task, prompt) for task, prompts in PROMPTS["labelled"].items() for prompt in prompts]
TASK_CODES = {code for code, *_ in TASKS}

EXAMPLES = {
    "EL": [
        "A wall lamp without power.",
        "A powerless laser pointer.",
        "An unplugged fridge.",
        "A smartwatch without electricity, simple and realistic.",
    ],
    "GR": ["A spoon in a simple space without gravity.", "A pencil in zero gravity.", "Water in zero-gravity."],
    "RI": ["An unripe mango, simple and realistic.", "A premature persimmon.", "Raw, undeveloped red currants."],
    "LR": [
        "A potted fern kept in a dark room for weeks.",
        "A seedling grown without sunlight.",
        "A tulip kept in darkness for a month.",
    ],
    "WR": ["A rarely watered crocus.", "A lawn during a long drought.", "A cactus in dry soil, never watered."],
    "FR": [
        "A little copper sulfide powder burning on a surface.",
        "Barium powder ignites on a surface.",
        "A small dish with kerosene burns steadily.",
    ],
    "SO": [
        "A cup of water in a freezer environment.",
        "In an arctic environment, a bottle holding water.",
        "At minus tens of degrees Celsius, a cup holding juice.",
    ],
    "ME": [
        "A chocolate bar in summer outdoors.",
        "A wax candle in the desert.",
        "An ice cube on a heated pan.",
        "An ice cream cone at sixty degrees Celsius.",
    ],
    "EV": [
        "A jug of milk at hundreds of degrees Celsius.",
        "A pot of soup boiling for hours.",
        "A glass of tea heated to four hundred degrees.",
    ],
    "RU": [
        "An iron bowl exposed to oxygen for decades.",
        "A steel shovel left in the open air for a long time.",
        "A metal nail left outside in the rain for weeks.",
        "A steel bolt in a humid cellar for years.",
    ],
    "IM": [
        "A glass containing both water and petrol.",
        "A clear glass filled with vinegar and mercury.",
        "A jar of milk and vegetable oil.",
        "Oil and water in a bottle.",
    ],
    "AB": ["A drop of ink touches a napkin.", "A drop of tea touches a felt.", "Red dye spilled on a cotton towel."],
    "DI": [
        "A little bit red dye added to a glass of water.",
        "A little bit milk added to a glass of soda water.",
        "Blue ink dripped into a beaker of water.",
        "A spoon of sugar stirred into a cup of tea.",
    ],
    "BU": [
        "A transparent water-filled box holds a brick.",
        "A box filled with water holding a steel key.",
        "A cork floating in a bucket.",
        "A tank of water with a wooden log.",
        "A cork dropped into a glass of water.",
    ],
    "LI": [
        "A ceramic mug in an extremely humid, room-temperature setting.",
        "A metal can in a highly humid space.",
        "Condensation on a window.",
        "A cold can of soda on a table.",
    ],
    "SC": [
        "A maple tree in winter.",
        "A lilac bush during autumn.",
        "A peony during spring.",
        "A lavender during summer.",
    ],
}


@pytest.mark.parametrize(("task", "prompt"), [(t, p) for t, ps in EXAMPLES.items() for p in ps])
def test_it_guesses_the_task_from_keywords(task, prompt):
    assert guess_task(prompt) == task


@pytest.mark.parametrize(("task", "prompt"), LABELLED)
def test_it_guesses_the_task_of_every_labelled_prompt(task, prompt):
    assert guess_task(prompt) == task, explain_task(prompt)


@pytest.mark.parametrize("prompt", PROMPTS["unassigned"])
def test_it_leaves_everyday_scenes_without_a_scientific_condition_unassigned(prompt):
    assert guess_task(prompt) is None, explain_task(prompt)


def test_the_labelled_prompts_cover_every_task_in_numbers():
    assert set(PROMPTS["labelled"]) == TASK_CODES
    assert all(len(prompts) >= 15 for prompts in PROMPTS["labelled"].values())
    assert len(LABELLED) >= 300 and len(PROMPTS["unassigned"]) >= 50
    assert len({p for _, p in LABELLED} | set(PROMPTS["unassigned"])) == len(LABELLED) + len(PROMPTS["unassigned"])


def test_it_covers_every_seeded_task():
    assert {rule.task for rule in RULES} == TASK_CODES


@pytest.mark.parametrize("prompt", ["A red apple on a table.", "A portrait of a cat.", ""])
def test_it_leaves_prompts_without_a_condition_unassigned(prompt):
    assert guess_task(prompt) is None


def test_it_matches_case_insensitively():
    assert guess_task("A WALL LAMP WITHOUT POWER") == "EL"
    assert guess_task("A BAG OF GUMMY BEARS LEFT IN A HOT CAR") == "ME"


@pytest.mark.parametrize(
    ("prompt", "task", "why"),
    [
        # melting vs seasonal change
        ("A chocolate bar in summer outdoors.", "ME", "melting is tried before the seasons"),
        ("A snowman in the garden on a warm spring afternoon.", "ME", "a warm spring day melts snow"),
        ("A chocolate cosmos in autumn.", "SC", "a flower's name is not chocolate left somewhere hot"),
        ("A potted chocolate cosmos kept in a dark room for weeks.", "LR", "a flower's name is not chocolate"),
        # freezing vs liquefaction
        ("A sealed can of cola left in the freezer overnight.", "SO", "a drink left in the freezer freezes"),
        ("A can of soda just taken out of the freezer.", "LI", "a can just out of the freezer sweats"),
        ("A bucket of rainwater on a balcony during a January cold snap.", "SO", "a cold snap freezes a liquid"),
        ("A cold can of soda on a table.", "LI", "cold alone is condensation"),
        (
            "A pair of glasses worn into a warm room from the freezing cold outside.",
            "LI",
            "freezing needs a liquid to be solidification",
        ),
        # freezing vs seasonal change, freezing vs melting
        ("A glass of orange juice left outside on a winter night.", "SO", "a drink out in winter freezes"),
        ("A weeping willow by the river in winter.", "SC", "a prompt that starts with a tree is seasonal"),
        ("A beech hedge beside a frozen pond in winter.", "SC", "the hedge is the subject, not the pond"),
        (
            "A boxelder in winter stands by the river, with high realism.",
            "SC",
            "a liquid far into the prompt is scenery",
        ),
        ("A birch tree in frosty winter.", "SC", "solidification needs a liquid subject"),
        ("A mug of hot chocolate forgotten on the porch on a winter night.", "SO", "hot chocolate is a drink"),
        # rust vs condensation
        ("A ceramic cup left in a humid room.", "LI", "humidity without a metal is condensation"),
        (
            "A metal tray in a extremely humid and room-temperature kitchen, realistic.",
            "LI",
            "humidity on a metal without a long time is condensation",
        ),
        ("A steel bolt in a humid cellar for years.", "RU", "a metal for years is rust"),
        ("A cold metal spoon held over a steaming cup of tea.", "LI", "a metal without time is no rust"),
        # rust, watering, light, ripeness vs seasons
        ("A garden shovel left out in the rain all winter.", "RU", "rust is tried before the seasons"),
        ("A steel bicycle chained outside through many rainy winters.", "RU", "many winters is a long time"),
        ("A rose bush that hasn't been watered all summer.", "WR", "watering is tried before the seasons"),
        ("A houseplant stored in a cellar all winter.", "LR", "light is tried before the seasons"),
        ("A persimmon harvested long before autumn.", "RI", "ripeness is tried before the seasons"),
        # melting vs flame reaction
        ("A marshmallow held over a campfire.", "ME", "confectionery near a fire melts"),
        ("A pinch of copper chloride sprinkled into a campfire.", "FR", "a salt in a fire colours the flame"),
        ("A wax candle in a simple space without gravity.", "GR", "the condition wins over the subject"),
        # evaporation vs watering and melting
        ("A pond in the desert after months without rain.", "EV", "without rain is watering only for plants"),
        ("A cornfield after months without rain.", "WR", "a crop without rain is watering"),
        ("An ice cube on a sunny patio.", "ME", "ice in the sun melts"),
        ("A saucer of water left on a sunny windowsill for two weeks.", "EV", "water in the sun for weeks"),
        # absorption, diffusion, buoyancy, immiscibility
        ("A drop of yellow dye touches a paper towel.", "AB", "absorption is tried before diffusion"),
        ("A sugar cube dipped in coffee.", "AB", "a sugar cube soaks coffee up"),
        ("A sugar cube dropped into a cup of tea.", "DI", "a sugar cube dissolves in tea"),
        ("A crystal of potassium permanganate dropped into a beaker of water.", "DI", "diffusion before buoyancy"),
        ("A steel bolt and a wine cork in a tank of water.", "BU", "a wine cork is no wine"),
        ("A realistic scene of a box filled with water holding a plastic dice.", "BU", "dice is not ice"),
        ("A glass of water with a splash of cooking oil poured in.", "IM", "oil and water before diffusion"),
        ("An astronaut's pen floating inside a spacecraft cabin.", "GR", "floating in space is no buoyancy"),
        ("A ceiling fan without electricity in a hot room.", "EL", "the condition wins over the setting"),
    ],
)
def test_it_resolves_overlaps_by_rule_order(prompt, task, why):
    assert guess_task(prompt) == task, f"{why}: {explain_task(prompt)}"


def test_it_explains_which_rule_gave_the_task():
    explanation = explain_task("A bag of gummy bears left in a hot car.")
    assert isinstance(explanation, Explanation)
    assert (explanation.task, explanation.condition, explanation.subject) == ("ME", "hot", "gummy bears")
    assert RULES[explanation.rule - 1].task == "ME" and RULES[explanation.rule - 1].why == explanation.why
    assert str(explanation).startswith(f"ME: rule {explanation.rule} (")
    assert "'hot' + 'gummy bears'" in str(explanation)
    assert explain_task("A portrait of a cat.") is None


def test_it_reports_both_conditions_of_a_rule_that_needs_two():
    explanation = explain_task("A saucer of water left on a sunny windowsill for two weeks.")
    assert (explanation.task, explanation.condition, explanation.subject) == ("EV", "sunny … for two weeks", "water")


def test_its_explanation_agrees_with_the_guess():
    for _, prompt in LABELLED:
        assert explain_task(prompt).task == guess_task(prompt)


def test_the_docstring_table_lists_every_rule_in_order():
    rows = re.findall(r"^\s?(\d+)  ([A-Z]{2})  ", task_rules.__doc__, re.MULTILINE)
    assert [(int(number), task) for number, task in rows] == [(n, r.task) for n, r in enumerate(RULES, start=1)]


def test_every_rule_says_what_it_looks_for():
    assert all(rule.why for rule in RULES)


def test_it_takes_linear_time_on_a_long_prompt():
    # A guard against catastrophic backtracking (a pattern once took 7 s on 10,000 words), not a speed
    # measurement: these 60,000 words take about 0.06 s, so the bound only trips on a hang.
    words = [
        "a",
        "the",
        "of",
        "water",
        "in",
        "on",
        "hot",
        "for",
        "tree",
        "steel",
        "oil",
        "drop",
        "glass",
        "winter",
        "sun",
        "with",
        "by",
        "left",
        "out",
        "wet",
        "ink",
    ]
    prompts = [" ".join(words[i % len(words)] for i in range(20_000)), "hot " * 20_000, "wet " * 20_000]
    started = time.perf_counter()
    for prompt in prompts:
        guess_task(prompt)
    assert time.perf_counter() - started < 20


def test_it_guesses_the_declared_task_of_every_demo_prompt():
    from annotation.demo import DEMO_TUPLES

    assert [(d.task, d.implicit) for d in DEMO_TUPLES if guess_task(d.implicit) != d.task] == []

"""Procedurally rendered Science-T2I tuples, for tests and the learnability check.

Eight tasks (ME melting, RU rust, RI ripeness, EL electricity, BU buoyancy, IM immiscibility, EV
evaporation, SC seasonal change), each with two *states* (ME: solid / melted, RU: shiny grey / rust-
brown, ...) and two *conditions* whose implicit prompt implies one state or the other ("... kept in
the freezer" -> solid, "... left on a hot stove" -> melted). A tuple picks a condition; its correct
image shows the implied state and its wrong image the other state, drawn from the same scene (same
subject, colour, position, size, background). The explicit prompt literally describes the correct
image, the superficial prompt the wrong one. Both conditions occur equally often, so no image-only
preference ("rusty is right") beats chance: a scorer has to read the prompt.

Splits. Subjects (per task) and colour words come from three disjoint pools (:data:`POOLS`):
``train``; ``val`` for model selection; ``test`` for the held-out measurement (e.g. ME trains on ice
cubes and candles, is selected on cheese wedges, is measured on gummy bears and snowmen; colours
train on red...maroon, select on pink and cyan, measure on magenta and navy). No train subject or
colour word occurs in a val or test prompt (tested). Colours with a fixed meaning in a task
(rust-brown, unripe green, water blue, oil gold, a dark screen) are in no pool, and each task leaves
out pool colours that would blend into its fixed ones (e.g. blue objects in blue water).

Deterministic: record ``i`` of ``make_synthetic_split(seed, n, pool)`` depends only on
(seed, pool name, i). Images are rendered at twice the requested size and downsampled, which
anti-aliases the shapes.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PIL import Image, ImageDraw

from science_t2i.format import TupleRecord

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    # train
    "red": (205, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (235, 210, 40),
    "blue": (40, 75, 210),
    "purple": (125, 55, 170),
    "white": (245, 245, 245),
    "black": (30, 30, 32),
    "maroon": (120, 20, 45),
    # val
    "pink": (245, 140, 185),
    "cyan": (30, 205, 220),
    # test
    "magenta": (215, 30, 200),
    "navy": (25, 30, 110),
}

GREY_METAL: RGB = (165, 170, 178)
RUST: RGB = (140, 68, 28)
UNRIPE_GREEN: RGB = (80, 165, 45)
WATER: RGB = (70, 130, 205)
OIL_GOLD: RGB = (230, 185, 50)
DARK_SCREEN: RGB = (14, 14, 20)
LIT_SCREEN: RGB = (250, 250, 215)
TABLE: RGB = (150, 120, 95)


@dataclass(frozen=True)
class Pool:
    """Subjects per task code, and the colour words, that one split may use."""

    name: str
    subjects: Mapping[str, tuple[str, ...]]
    colours: tuple[str, ...]


@dataclass(frozen=True)
class Scene:
    """Everything the correct and the wrong image of a tuple share."""

    size: int  # canvas side in pixels (twice the output size)
    subject: str
    colour: RGB
    background: RGB
    x: float  # object centre, as a fraction of the canvas
    scale: float  # object size, as a fraction of the canvas
    shape: int  # 0..3, from the subject, so a subject always looks the same
    detail_seed: int  # spots, screen content: identical in both images

    def px(self, fraction: float) -> int:
        return round(fraction * self.size)


@dataclass(frozen=True)
class Task:
    code: str
    ip: tuple[tuple[str, ...], tuple[str, ...]]  # implicit-prompt templates implying state 0 / state 1
    literal: tuple[str, str]  # literal description of state 0 / state 1 (explicit or superficial prompt)
    excluded_colours: frozenset[str]
    draw: Callable[[ImageDraw.ImageDraw, Scene, int], None]
    colour_is_background: bool = False


# --- drawing helpers --------------------------------------------------------------------------


def _jitter(rgb: RGB, rng: random.Random, amount: int = 14) -> RGB:
    red, green, blue = (min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)
    return red, green, blue


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    red, green, blue = (round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))
    return red, green, blue


def _object(draw: ImageDraw.ImageDraw, shape: int, box: tuple[int, int, int, int], fill: RGB) -> None:
    """One of four silhouettes: circle, square, tall bar, rounded box."""
    x0, y0, x1, y1 = box
    if shape == 0:
        draw.ellipse(box, fill=fill)
    elif shape == 1:
        draw.rectangle(box, fill=fill)
    elif shape == 2:
        w = (x1 - x0) // 4
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=fill)
    else:
        draw.rounded_rectangle(box, radius=(x1 - x0) // 4, fill=fill)


def _box(scene: Scene, cx: int, cy: int, side: int) -> tuple[int, int, int, int]:
    half = side // 2
    return cx - half, cy - half, cx + half, cy + half


# --- the tasks --------------------------------------------------------------------------------


def _draw_melting(draw, scene: Scene, state: int) -> None:  # 0 solid, 1 melted
    table_top = scene.px(0.78)
    draw.rectangle((0, table_top, scene.size, scene.size), fill=TABLE)
    side, cx = scene.px(scene.scale), scene.px(scene.x)
    if state == 0:
        _object(draw, scene.shape, (cx - side // 2, table_top - side, cx + side // 2, table_top), scene.colour)
    else:
        w, h = round(side * 1.9), max(2, side // 4)
        draw.ellipse((cx - w // 2, table_top - h // 2, cx + w // 2, table_top + h // 2), fill=scene.colour)


def _draw_rust(draw, scene: Scene, state: int) -> None:  # 0 shiny grey, 1 rusty
    side, cx, cy = scene.px(scene.scale), scene.px(scene.x), scene.px(0.5)
    box = _box(scene, cx, cy, side)
    _object(draw, scene.shape, box, GREY_METAL if state == 0 else RUST)
    rng = random.Random(scene.detail_seed)
    if state == 0:  # a specular highlight
        draw.line(
            (box[0] + side // 4, box[1] + side // 5, box[0] + side // 2, box[1] + side // 5),
            fill=(250, 250, 250),
            width=max(2, side // 10),
        )
    else:  # flaking patches
        for _ in range(5):
            x, y, r = rng.randint(box[0], box[2]), rng.randint(box[1], box[3]), max(2, side // 10)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(95, 42, 18))


def _draw_ripeness(draw, scene: Scene, state: int) -> None:  # 0 unripe green, 1 ripe colour
    side, cx, cy = scene.px(scene.scale), scene.px(scene.x), scene.px(0.55)
    x0, y0, x1, y1 = _box(scene, cx, cy, side)
    draw.ellipse((x0, y0, x1, y1), fill=UNRIPE_GREEN if state == 0 else scene.colour)
    draw.line((cx, y0 - side // 5, cx, y0 + side // 10), fill=(100, 70, 40), width=max(2, side // 12))


def _draw_electricity(draw, scene: Scene, state: int) -> None:  # 0 lit screen, 1 dark screen
    side, cx, cy = scene.px(scene.scale * 1.4), scene.px(scene.x), scene.px(0.5)
    aspect = (1.5, 0.65, 1.0, 1.25)[scene.shape]
    w, h = round(side * min(aspect, 1.4)), round(side / max(aspect, 0.8))
    x0, y0, x1, y1 = cx - w // 2, cy - h // 2, cx + w // 2, cy + h // 2
    draw.rounded_rectangle((x0, y0, x1, y1), radius=max(2, side // 10), fill=scene.colour)
    bezel = max(3, side // 8)
    screen = (x0 + bezel, y0 + bezel, x1 - bezel, y1 - bezel)
    draw.rectangle(screen, fill=LIT_SCREEN if state == 0 else DARK_SCREEN)
    if state == 0:  # something on the screen
        rng = random.Random(scene.detail_seed)
        for _ in range(3):
            bx, by = rng.randint(screen[0], screen[2] - 2), rng.randint(screen[1], screen[3] - 2)
            draw.rectangle(
                (bx, by, min(screen[2], bx + side // 5), min(screen[3], by + side // 8)),
                fill=_jitter((120, 160, 230), rng, 60),
            )


def _draw_buoyancy(draw, scene: Scene, state: int) -> None:  # 0 floating, 1 sunk
    waterline = scene.px(0.42)
    draw.rectangle((0, waterline, scene.size, scene.size), fill=WATER)
    draw.rectangle((0, scene.px(0.94), scene.size, scene.size), fill=(90, 80, 60))  # the floor
    side, cx = scene.px(scene.scale), scene.px(scene.x)
    cy = waterline if state == 0 else scene.px(0.94) - side // 2
    _object(draw, scene.shape, _box(scene, cx, cy, side), scene.colour)


def _draw_immiscibility(draw, scene: Scene, state: int) -> None:  # 0 layered, 1 evenly mixed
    side, cx = scene.px(min(0.8, scene.scale * 1.6)), scene.px(scene.x)
    w = round(side * (0.6, 0.9, 0.5, 0.75)[scene.shape])
    x0, x1, y0, y1 = cx - w // 2, cx + w // 2, scene.px(0.92) - side, scene.px(0.92)
    liquid_top = y0 + side // 5
    if state == 0:
        split = liquid_top + (y1 - liquid_top) * 2 // 5
        draw.rectangle((x0, liquid_top, x1, split), fill=OIL_GOLD)
        draw.rectangle((x0, split, x1, y1), fill=scene.colour)
    else:
        draw.rectangle((x0, liquid_top, x1, y1), fill=_mix(scene.colour, OIL_GOLD, 0.4))
    draw.rectangle((x0, y0, x1, y1), outline=(70, 70, 80), width=max(2, side // 20))


def _draw_evaporation(draw, scene: Scene, state: int) -> None:  # 0 full, 1 dried out
    side, cx = scene.px(min(0.7, scene.scale * 1.5)), scene.px(scene.x)
    w = round(side * (0.7, 1.0, 0.55, 0.85)[scene.shape])
    x0, x1, y0, y1 = cx - w // 2, cx + w // 2, scene.px(0.9) - side, scene.px(0.9)
    level = y0 + side // 6 if state == 0 else y1 - max(2, side // 14)
    draw.rectangle((x0, level, x1, y1), fill=scene.colour)
    draw.line((x0, y0, x0, y1), fill=(70, 70, 80), width=max(2, side // 20))
    draw.line((x1, y0, x1, y1), fill=(70, 70, 80), width=max(2, side // 20))
    draw.line((x0, y1, x1, y1), fill=(70, 70, 80), width=max(2, side // 20))


def _draw_seasons(draw, scene: Scene, state: int) -> None:  # 0 green crown, 1 bare and snowy
    ground = scene.px(0.85)
    draw.rectangle((0, ground, scene.size, scene.size), fill=(120, 150, 90) if state == 0 else (245, 245, 250))
    side, cx = scene.px(scene.scale * 1.4), scene.px(scene.x)
    trunk_w = max(3, side // 8)
    draw.rectangle((cx - trunk_w // 2, ground - side, cx + trunk_w // 2, ground), fill=(95, 65, 40))
    crown = (cx - side // 2, ground - side - side // 3, cx + side // 2, ground - side // 3)
    if state == 0:
        draw.ellipse(crown, fill=_jitter((55, 140, 50), random.Random(scene.detail_seed), 12))
    else:
        rng = random.Random(scene.detail_seed)
        for _ in range(5):
            tip = (rng.randint(crown[0], crown[2]), rng.randint(crown[1], crown[1] + side // 3))
            draw.line((cx, ground - side // 2, *tip), fill=(95, 65, 40), width=max(2, trunk_w // 2))
            draw.ellipse((tip[0] - 2, tip[1] - 2, tip[0] + 2, tip[1] + 2), fill=(250, 250, 255))


TASKS: dict[str, Task] = {
    task.code: task
    for task in (
        Task(
            "ME",
            (
                ("A {colour} {subject} kept in the freezer overnight", "A frozen {colour} {subject} in a cold room"),
                (
                    "A {colour} {subject} left on a hot stove for an hour",
                    "A {colour} {subject} in the desert sun all afternoon",
                ),
            ),
            ("A solid {colour} {subject} standing on a table", "A flat puddle of melted {colour} {subject} on a table"),
            frozenset(),
            _draw_melting,
        ),
        Task(
            "RU",
            (
                ("A brand-new steel {subject} kept in a dry drawer", "A freshly polished {subject} from the factory"),
                ("An iron {subject} left in the rain for months", "An old iron {subject} forgotten outdoors for years"),
            ),
            ("A shiny grey {subject} on a {colour} table", "A rust-brown {subject} on a {colour} table"),
            frozenset(),
            _draw_rust,
            colour_is_background=True,
        ),
        Task(
            "RI",
            (
                ("An unripe {subject} picked weeks too early", "A {subject} that was harvested long before its season"),
                ("A {subject} at peak ripeness, ready to eat", "A sweet {subject} that ripened fully in the sun"),
            ),
            ("A hard green {subject}", "A ripe {colour} {subject}"),
            frozenset(),
            _draw_ripeness,
        ),
        Task(
            "EL",
            (
                ("A {colour} {subject} plugged in and switched on", "A {colour} {subject} playing a movie"),
                (
                    "A {colour} {subject} with its battery taken out",
                    "A {colour} {subject} unplugged during a power cut",
                ),
            ),
            ("A {colour} {subject} with a bright glowing screen", "A {colour} {subject} with a dark, unlit screen"),
            frozenset({"white", "black", "navy"}),
            _draw_electricity,
        ),
        Task(
            "BU",
            (
                (
                    "A {colour} {subject} made of cork dropped into a water tank",
                    "A hollow {colour} plastic {subject} thrown into a pond",
                ),
                (
                    "A {colour} {subject} made of solid lead dropped into a water tank",
                    "A heavy {colour} iron {subject} thrown into a pond",
                ),
            ),
            (
                "A {colour} {subject} floating on the surface of the water",
                "A {colour} {subject} resting on the bottom of the water",
            ),
            frozenset({"blue", "cyan", "navy"}),
            _draw_buoyancy,
        ),
        Task(
            "IM",
            (
                (
                    "Olive oil poured onto {colour} water in a {subject} and left to settle",
                    "Cooking oil shaken with {colour} water in a {subject}, then left standing",
                ),
                (
                    "Apple juice stirred into {colour} water in a {subject}",
                    "Warm honey dissolved into {colour} water in a {subject}",
                ),
            ),
            (
                "A {subject} with a golden layer floating on top of {colour} liquid",
                "A {subject} filled with one evenly mixed {colour} and gold liquid",
            ),
            frozenset({"yellow"}),
            _draw_immiscibility,
        ),
        Task(
            "EV",
            (
                (
                    "A {subject} of {colour} juice sealed with a tight lid for a week",
                    "A {subject} of {colour} juice poured a minute ago",
                ),
                (
                    "An open {subject} of {colour} juice left on a sunny windowsill for a month",
                    "A {subject} of {colour} juice forgotten in a hot attic all summer",
                ),
            ),
            (
                "A {subject} filled to the top with {colour} juice",
                "An empty {subject} with only a thin dry {colour} crust at the bottom",
            ),
            frozenset({"white"}),
            _draw_evaporation,
        ),
        Task(
            "SC",
            (
                ("A {subject} on a warm day in July", "A {subject} in the middle of a hot summer"),
                ("A {subject} on a freezing day in January", "A {subject} in the depths of a snowy winter"),
            ),
            (
                "A {subject} with a full crown of green leaves under a {colour} sky",
                "A bare {subject} with snow on its branches under a {colour} sky",
            ),
            frozenset(),
            _draw_seasons,
            colour_is_background=True,
        ),
    )
}

TASK_CODES: tuple[str, ...] = tuple(TASKS)

POOLS: dict[str, Pool] = {
    "train": Pool(
        "train",
        {
            "ME": (
                "ice cube",
                "candle",
                "butter block",
                "chocolate bar",
                "wax crayon",
                "snowball",
                "popsicle",
                "ice sculpture",
            ),
            "RU": ("nail", "key", "chain", "bolt", "wrench", "padlock", "horseshoe", "gate"),
            "RI": ("banana", "tomato", "mango", "apple", "strawberry", "peach", "cherry", "plum"),
            "EL": ("television", "laptop", "phone", "monitor", "tablet", "calculator", "game console", "e-reader"),
            "BU": ("ball", "cube", "toy duck", "bottle", "log", "crate", "toy boat", "ring"),
            "IM": ("glass", "jar", "beaker", "bottle", "bowl", "test tube", "vase", "cup"),
            "EV": ("glass", "mug", "bowl", "saucer", "jar", "cup", "bottle", "pan"),
            "SC": (
                "oak tree",
                "maple tree",
                "birch tree",
                "apple tree",
                "beech tree",
                "elm tree",
                "ash tree",
                "willow tree",
            ),
        },
        ("red", "orange", "yellow", "blue", "purple", "white", "black", "maroon"),
    ),
    "val": Pool(
        "val",
        {
            "ME": ("cheese wedge", "ice lolly"),
            "RU": ("hammer", "spoon"),
            "RI": ("papaya", "apricot"),
            "EL": ("smartwatch", "dashboard"),
            "BU": ("barrel", "buoy"),
            "IM": ("flask", "tumbler"),
            "EV": ("ramekin", "chalice"),
            "SC": ("poplar tree", "cedar tree"),
        },
        ("pink", "cyan"),
    ),
    "test": Pool(
        "test",
        {
            "ME": ("gummy bear", "snowman", "lip balm"),
            "RU": ("anchor", "bicycle", "shovel"),
            "RI": ("persimmon", "raspberry", "blueberry"),
            "EL": ("cash register", "arcade machine", "thermostat"),
            "BU": ("coconut", "teapot", "rubber boot"),
            "IM": ("aquarium", "bucket", "pitcher"),
            "EV": ("goblet", "teacup", "baking dish"),
            "SC": ("chestnut tree", "linden tree", "walnut tree"),
        },
        ("magenta", "navy"),
    ),
}


# --- records ----------------------------------------------------------------------------------


def render_pair(task: Task, scene: Scene, correct_state: int, out_size: int) -> tuple[Image.Image, Image.Image]:
    """(correct, wrong) images of one scene."""
    images = []
    for state in (correct_state, 1 - correct_state):
        image = Image.new("RGB", (scene.size, scene.size), scene.background)
        task.draw(ImageDraw.Draw(image), scene, state)
        images.append(image.resize((out_size, out_size), Image.Resampling.BOX))
    return images[0], images[1]


def make_record(task: Task, pool: Pool, condition: int, rng: random.Random, size: int = 64) -> TupleRecord:
    """One tuple of ``task`` whose implicit prompt implies state ``condition``."""
    subject = rng.choice(pool.subjects[task.code])
    colour_name = rng.choice([c for c in pool.colours if c not in task.excluded_colours])
    colour = _jitter(COLOURS[colour_name], rng)
    pastel = _mix(_jitter((200, 200, 200), rng, 55), (255, 255, 255), 0.45)
    scene = Scene(
        size=2 * size,
        subject=subject,
        colour=colour,
        background=_mix(colour, (255, 255, 255), 0.55) if task.colour_is_background else pastel,
        x=rng.uniform(0.35, 0.65),
        scale=rng.uniform(0.3, 0.45),
        shape=zlib.crc32(subject.encode()) % 4,
        detail_seed=rng.randrange(2**31),
    )
    correct, wrong = render_pair(task, scene, condition, size)
    words = {"subject": subject, "colour": colour_name}
    return TupleRecord(
        implicit_prompt=_fill(rng.choice(task.ip[condition]), words),
        explicit_prompt=_fill(task.literal[condition], words),
        superficial_prompt=_fill(task.literal[1 - condition], words),
        correct_image=correct,
        wrong_image=wrong,
        task=task.code,
        subject=subject,
        split=pool.name,
        extra={"colour": colour_name, "condition": condition},
    )


def _fill(template: str, words: dict[str, str]) -> str:
    """Fill a template; "A orange" becomes "An orange"."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", template.format(**words))


def make_synthetic_split(
    seed: int, n: int, pool: Pool | str = "train", *, tasks: tuple[str, ...] = TASK_CODES, size: int = 64
) -> list[TupleRecord]:
    """``n`` tuples from ``pool`` (a :class:`Pool` or a name in :data:`POOLS`), balanced over tasks
    and conditions: record i is task ``tasks[i % len(tasks)]`` with condition ``(i // len(tasks)) % 2``."""
    pool = POOLS[pool] if isinstance(pool, str) else pool
    records = []
    for i in range(n):
        rng = random.Random(f"{seed}:{pool.name}:{i}")
        task = TASKS[tasks[i % len(tasks)]]
        records.append(make_record(task, pool, (i // len(tasks)) % 2, rng, size))
    return records

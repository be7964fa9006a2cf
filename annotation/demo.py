"""Demo content for ``manage.py seed_demo``: users, two hand-written tuples per task, drawn images.

Each tuple comes with two pictures drawn by Pillow from plain shapes: the *correct* one shows what
the explicit prompt says (a brown nail), the *wrong* one what the superficial prompt says (a grey
nail), each with a small caption of what it shows. Pictures are data (lists of shapes built by
the small helpers below), so rendering is deterministic: the same content always gives the same
PNG bytes, which :func:`annotation.services.catalog.store_image` deduplicates on a rerun.

Demo users get their demo password only when they are created; an existing account of the same
name keeps its own. Seeding is idempotent: users and tuples are looked up before being created,
and a tuple that already has a demo pair is not drawn again (so a rerun is fast, and a Pillow
upgrade that changed the bytes would still not add a second pair).
"""

from __future__ import annotations

import io
import math
import zlib
from collections import Counter
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from annotation import roles
from annotation.models import Image, Pair, Task
from annotation.services import catalog, people

W, H = 512, 384
GROUND = 300  # y of the floor / table / soil line
CAPTION_TOP = H - 30
GENERATOR = "demo-renderer"
SOURCE = "seed_demo"

# --- users ---------------------------------------------------------------------------------

# (username, role, disciplines, password): demo passwords are printed by seed_demo on purpose.
USERS = [
    ("admin", roles.ADMIN, [], "admin-demo-pass"),
    ("reviewer", roles.REVIEWER, [], "reviewer-demo-pass"),
    ("physicist", roles.ANNOTATOR, ["physics"], "physicist-demo-pass"),
    ("chemist", roles.ANNOTATOR, ["chemistry"], "chemist-demo-pass"),
    ("biologist", roles.ANNOTATOR, ["biology"], "biologist-demo-pass"),
    ("expert", roles.ANNOTATOR, ["physics", "chemistry", "biology"], "expert-demo-pass"),
    # A second all-round expert, so every discipline has the k = 3 annotators a pair needs for consensus.
    ("expert2", roles.ANNOTATOR, ["physics", "chemistry", "biology"], "expert2-demo-pass"),
]

# --- pictures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One ``ImageDraw`` call: ``kind`` is the method name (rectangle, ellipse, polygon, line, arc)."""

    kind: str
    xy: tuple
    fill: tuple | None = None
    outline: tuple | None = None
    width: int = 1
    angles: tuple = ()  # start and end, for arcs


@dataclass(frozen=True)
class Picture:
    caption: str
    shapes: tuple[Shape, ...]
    background: tuple = (236, 240, 244)


WATER = (150, 200, 240)
ICE = (232, 242, 250)
RUST = (150, 74, 30)
RUSTY = (170, 100, 50)
STEEL = (170, 176, 184)
GREEN = (70, 150, 60)
PALE = (214, 208, 130)
BROWN = (140, 110, 60)
WOOD = (190, 140, 80)
TABLE = (196, 170, 132)
DARK = (60, 60, 66)


def rect(xy, fill=None, outline=None, width=1):
    return Shape("rectangle", tuple(xy), fill, outline, width)


def oval(xy, fill=None, outline=None, width=1):
    return Shape("ellipse", tuple(xy), fill, outline, width)


def poly(points, fill=None, outline=None, width=1):
    return Shape("polygon", tuple(points), fill, outline, width)


def line(points, colour, width=3):
    return Shape("line", tuple(points), colour, None, width)


def arc(xy, start, end, colour, width=3):
    return Shape("arc", tuple(xy), colour, None, width, (start, end))


def scatter(box, n):
    """n points spread over box without randomness (a fixed lattice walk)."""
    x0, y0, x1, y1 = box
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    return [(x0 + (i * 259) % w, y0 + (i * 115 + i * i) % h) for i in range(n)]


def dots(box, n, size, fill, outline=None):
    return [oval((x, y, x + size[0], y + size[1]), fill, outline) for x, y in scatter(box, n)]


def crescent(centre, outer, inner, lift, steps=24):
    """A banana-like polygon: the lower arc of one ellipse and, back, of a smaller, lifted one."""
    cx, cy = centre

    def points(radii, dy, a, b):
        angles = [math.radians(a + (b - a) * i / steps) for i in range(steps + 1)]
        return [(cx + radii[0] * math.cos(t), cy + dy + radii[1] * math.sin(t)) for t in angles]

    return points(outer, 0, 20, 160) + points(inner, -lift, 160, 20)


def scene(*parts, ground=TABLE):
    """A floor (or table top) in ``ground`` colour with the given shape lists on it."""
    shapes = [rect((0, GROUND, W, CAPTION_TOP), ground)]
    for part in parts:
        shapes += part
    return shapes


def glass(liquid, level=150, layer=None):
    """A drinking glass filled from ``level`` down; ``layer`` = (colour, depth) floats on top."""
    inside = [(202, level), (310, level), (304, GROUND - 4), (208, GROUND - 4)]
    shapes = [poly(inside, liquid)]
    if layer:
        colour, depth = layer
        shapes.append(rect((205, level, 307, level + depth), colour))
    return shapes + [poly([(196, 120), (316, 120), (308, GROUND), (204, GROUND)], None, (90, 100, 110), 4)]


def in_glass(colour, y):
    """A small block (cork, tea bag) inside the glass at height y."""
    return [rect((236, y, 276, y + 28), colour)]


def tank(wood_floats):
    wood = (150, 130, 230, 160) if wood_floats else (150, 260, 230, GROUND)
    return [
        rect((96, 140, 416, GROUND), (170, 210, 240)),
        rect((96, 110, 416, GROUND), None, (90, 100, 110), 4),
        line([(96, 140), (416, 140)], (60, 130, 200), 3),
        rect(wood, WOOD),
        rect((300, 280, 380, GROUND), STEEL),
    ]


def puddle(frozen):
    if frozen:
        return [oval((110, 300, 400, 345), ICE, (200, 215, 230), 3)]
    return [oval((110, 300, 400, 345), WATER), arc((200, 310, 310, 338), 200, 340, (90, 150, 210))]


def ice_cube(melted):
    if melted:
        return [oval((150, 288, 370, 320), WATER), rect((240, 282, 262, 300), ICE)]
    return [rect((206, 200, 306, GROUND), ICE, (160, 190, 210), 3)]


def chocolate(melted):
    colour = (92, 52, 30)
    if melted:
        return [oval((120, 270, 400, 320), colour)]
    grooves = [line([(x, 230), (x, GROUND)], (60, 30, 16), 3) for x in (198, 256, 314)]
    return [rect((140, 230, 372, GROUND), colour)] + grooves


def towel(stain):
    spot = oval((190, 220, 330, 290), (120, 150, 230)) if stain else oval((240, 236, 272, 262), (30, 60, 200))
    return [rect((96, 200, 416, GROUND), (250, 250, 250)), spot]


def block(colour):
    return [rect((176, 200, 336, GROUND), colour)]


def dish(full):
    inner = oval((154, 258, 358, 302), WATER) if full else oval((160, 262, 352, 300), None, (215, 215, 200), 3)
    return [oval((140, 250, 372, 310), (250, 250, 250), (140, 140, 150), 4), inner]


def pot(full):
    return [rect((156, 170, 356, GROUND), (120, 120, 126)), rect((170, 170, 342, 280), WATER if full else (40, 36, 30))]


def mirror(fogged):
    frame, border = (136, 50, 376, 290), (120, 120, 130)
    if fogged:
        return [rect(frame, (225, 228, 232), border, 8)] + dots((146, 60, 366, 280), 60, (6, 6), (200, 205, 212))
    return [rect(frame, (150, 190, 220), border, 8), oval((216, 110, 296, 200), (230, 190, 160))]


def tree(crown=None, fallen=None):
    """A tree with a round ``crown`` of leaves, or bare branches; ``fallen`` leaves on the ground."""
    shapes = [rect((242, 170, 270, GROUND), (110, 78, 48))]
    if crown:
        shapes += [oval((146, 40, 276, 170), crown), oval((236, 30, 366, 165), crown), oval((186, 10, 326, 120), crown)]
    else:
        shapes += [
            line([(256, 200), (256 + dx, 200 + dy)], (110, 78, 48), 7)
            for dx, dy in [(-70, -80), (70, -90), (-40, -120), (45, -130), (0, -150)]
        ]
    if fallen:
        shapes += dots((96, GROUND + 5, 406, 345), 40, (12, 7), fallen)
    return shapes


def potted_plant(leaf, stem=(70, 140, 60), droop=False, soil=(92, 64, 40)):
    shapes = [
        poly([(206, 240), (306, 240), (292, GROUND + 20), (220, GROUND + 20)], (180, 92, 60)),
        rect((210, 232, 302, 246), soil),
    ]
    shapes.append(line([(256, 236), (256, 150 if droop else 90)], stem, 6))
    for side in (-1, 1):
        for i, y in enumerate((210, 185) if droop else (200, 165, 130)):
            tip = (256 + side * (70 - i * 12), y + (50 if droop else -25))
            base = (256 + side * 34, y - 4) if droop else (256 + side * 20, y + 12)
            shapes.append(poly([(256, y), tip, base], leaf))
    return shapes


def grass(colour, ground=(120, 90, 60)):
    shapes = [rect((0, GROUND - 20, W, CAPTION_TOP), ground)]
    return shapes + [line([(x, GROUND + 10), (x + 6, GROUND - 30 - x % 17)], colour, 3) for x in range(0, W, 9)]


def flame(outer, inner):
    return [
        rect((236, 240, 276, GROUND), (120, 120, 130)),  # burner
        rect((220, GROUND - 6, 292, GROUND + 6), (80, 80, 90)),
        poly([(256, 70), (306, 180), (286, 236), (226, 236), (206, 180)], outer),
        poly([(256, 130), (280, 200), (268, 232), (244, 232), (232, 200)], inner),
    ]


def nail(body, spots=None):
    shapes = [
        rect((120, 190, 380, 206), body),
        rect((110, 176, 126, 220), body),
        poly([(380, 190), (410, 198), (380, 206)], body),
    ]
    return shapes + (dots((130, 190, 380, 204), 25, (9, 6), spots) if spots else [])


def chain(colour, spots=None):
    shapes = [oval((x, 180, x + 64, 220), None, colour, 10) for x in range(80, 430, 50)]
    return shapes + (dots((80, 176, 440, 222), 40, (8, 8), spots) if spots else [])


def lamp(lit):
    shapes = [rect((200, GROUND - 10, 312, GROUND), DARK), line([(256, GROUND - 10), (256, 150)], DARK, 8)]
    if lit:
        shapes.append(poly([(256, 140), (440, GROUND), (72, GROUND)], (255, 236, 150)))
    return shapes + [poly([(206, 150), (306, 150), (276, 100), (236, 100)], (255, 214, 90) if lit else (70, 70, 78))]


def television(on):
    shapes = [rect((230, 250, 282, GROUND), (40, 40, 44)), rect((96, 70, 416, 260), (30, 30, 34))]
    if not on:
        return shapes + [rect((112, 86, 400, 244), (12, 12, 14))]
    return shapes + [
        rect((112, 86, 400, 244), (120, 190, 240)),
        oval((150, 150, 260, 244), (90, 170, 80)),
        oval((300, 100, 350, 150), (255, 220, 80)),
    ]


def mango(body):
    return [oval((156, 110, 356, 270), body, (80, 70, 30), 3), line([(256, 112), (262, 84)], (90, 70, 40), 6)]


def banana(body, spots=None):
    shapes = [
        poly(crescent((256, 110), (170, 150), (160, 110), 20), body, (80, 70, 30), 3),
        line([(92, 150), (76, 120)], (90, 70, 40), 8),
    ]
    return shapes + (dots((170, 200, 340, 250), 18, (8, 6), spots) if spots else [])


def cabin(*parts):
    """Inside a space station: a grey floor and a porthole on the stars."""
    return scene(
        [oval((60, 60, 150, 150), (20, 24, 50)), oval((100, 80, 106, 86), (255, 255, 255))],
        *parts,
        ground=(150, 150, 160),
    )


def apple(floating):
    y = 150 if floating else GROUND - 60
    return [oval((226, y, 286, y + 60), (200, 40, 40))]


def water_drops(floating):
    if floating:
        return dots((180, 80, 400, 240), 9, (22, 22), WATER)
    return [oval((150, GROUND + 8, 380, GROUND + 34), WATER)]


# --- content ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoTuple:
    task: str
    implicit: str
    explicit: str
    superficial: str
    subject: str
    correct: Picture
    wrong: Picture


def _t(task, subject, implicit, explicit, superficial, correct, wrong):
    """A tuple whose pictures are given as (caption, shapes) for the correct and the wrong image."""
    return DemoTuple(task, implicit, explicit, superficial, subject, Picture(*correct), Picture(*wrong))


DEMO_TUPLES: tuple[DemoTuple, ...] = (
    _t(
        "GR",
        "apple",
        "An apple let go in the cabin of an orbiting space station.",
        "An apple floating in mid-air inside a space station cabin.",
        "An apple lying on the floor of a room.",
        ("apple floating mid-air", cabin(apple(True))),
        ("apple on the floor", cabin(apple(False))),
    ),
    _t(
        "GR",
        "water",
        "Water squeezed out of a pouch by an astronaut in zero gravity.",
        "Water drifting as floating spheres in the air.",
        "Water splashing into a puddle on the floor.",
        ("water as floating spheres", cabin(water_drops(True))),
        ("water puddle on the floor", cabin(water_drops(False))),
    ),
    _t(
        "SO",
        "glass of water",
        "A glass of water left outside overnight at minus twenty degrees Celsius.",
        "A glass of solid white ice with frost on the rim.",
        "A glass of clear liquid water.",
        ("solid ice in the glass", scene(glass(ICE), [line([(230, 190), (260, 230), (250, 270)], (200, 215, 230))])),
        ("liquid water in the glass", scene(glass(WATER))),
    ),
    _t(
        "SO",
        "puddle",
        "A puddle on the pavement after a freezing winter night.",
        "A frozen puddle with a white, icy surface.",
        "A puddle of rippling liquid water.",
        ("frozen white puddle", scene(puddle(True), ground=(120, 120, 126))),
        ("rippling liquid puddle", scene(puddle(False), ground=(120, 120, 126))),
    ),
    _t(
        "ME",
        "ice cube",
        "An ice cube on a sunny windowsill at noon in midsummer.",
        "A small puddle of water with a tiny melting ice remnant.",
        "A solid, sharp-edged ice cube.",
        ("puddle with a melting ice remnant", scene(ice_cube(True), ground=(230, 230, 236))),
        ("solid sharp-edged ice cube", scene(ice_cube(False), ground=(230, 230, 236))),
    ),
    _t(
        "ME",
        "chocolate bar",
        "A chocolate bar left on a car dashboard on a hot summer afternoon.",
        "A soft, melted chocolate bar oozing into a puddle.",
        "A solid chocolate bar with crisp squares.",
        ("melted chocolate puddle", scene(chocolate(True), ground=DARK)),
        ("solid chocolate bar", scene(chocolate(False), ground=DARK)),
    ),
    _t(
        "AB",
        "paper towel",
        "A drop of blue ink falls onto a white paper towel.",
        "A blue stain spreading into the fibres of the paper towel.",
        "A round blue droplet sitting on top of the towel.",
        ("blue stain soaked into the towel", scene(towel(True))),
        ("blue droplet on top of the towel", scene(towel(False))),
    ),
    _t(
        "AB",
        "sponge",
        "A dry kitchen sponge pressed into a bowl of red juice.",
        "A sponge soaked red all the way through.",
        "A dry yellow sponge beside the juice.",
        ("sponge soaked red", scene(block((200, 50, 60)))),
        ("dry yellow sponge", scene(block((245, 215, 70)))),
    ),
    _t(
        "BU",
        "wooden block",
        "A wooden block and an iron bolt dropped into a tank of water.",
        "The wooden block floating at the surface and the iron bolt on the bottom.",
        "Both the wooden block and the bolt resting on the bottom of the tank.",
        ("wood floats, iron bolt sinks", scene(tank(True))),
        ("both on the bottom", scene(tank(False))),
    ),
    _t(
        "BU",
        "cork",
        "A cork dropped into a glass filled with water.",
        "A cork bobbing on the surface of the water.",
        "A cork lying at the bottom of the glass.",
        ("cork floating at the surface", scene(glass(WATER, 160), in_glass(WOOD, 146))),
        ("cork at the bottom of the glass", scene(glass(WATER, 160), in_glass(WOOD, 266))),
    ),
    _t(
        "DI",
        "glass of water",
        "A drop of red food coloring added to a glass of water an hour ago.",
        "Water evenly tinted pink throughout the glass.",
        "A single red drop sitting in otherwise clear water.",
        ("water evenly tinted pink", scene(glass((240, 160, 180)))),
        ("a red drop in clear water", scene(glass(WATER), [oval((246, 154, 266, 174), (200, 20, 40))])),
    ),
    _t(
        "DI",
        "cup of tea",
        "A tea bag left in a cup of hot water for five minutes.",
        "Water evenly brown all around the tea bag.",
        "Clear water around a dry-looking tea bag.",
        ("water evenly brown", scene(glass((170, 110, 60)), in_glass((220, 210, 190), 200))),
        ("clear water around the tea bag", scene(glass(WATER), in_glass((220, 210, 190), 200))),
    ),
    _t(
        "EL",
        "desk lamp",
        "A desk lamp during a power outage at night.",
        "A dark, switched-off desk lamp.",
        "A desk lamp glowing brightly.",
        ("dark lamp, no light", scene(lamp(False), ground=(70, 60, 50))),
        ("lamp glowing", scene(lamp(True), ground=(70, 60, 50))),
    ),
    _t(
        "EL",
        "television",
        "A television with its plug pulled out of the wall.",
        "A television with a black, blank screen.",
        "A television showing a colourful picture.",
        ("blank black screen", scene(television(False))),
        ("screen showing a picture", scene(television(True))),
    ),
    _t(
        "EV",
        "dish",
        "A shallow dish of water left in the desert sun for a week.",
        "An empty, dry dish with a white mineral ring.",
        "A dish full of water.",
        ("empty dish with a mineral ring", scene(dish(False), ground=(222, 190, 140))),
        ("dish full of water", scene(dish(True), ground=(222, 190, 140))),
    ),
    _t(
        "EV",
        "pot",
        "A pot of water left boiling on a stove for three hours.",
        "An empty, scorched pot on the stove.",
        "A pot full of water on the stove.",
        ("empty scorched pot", scene(pot(False), ground=DARK)),
        ("pot full of water", scene(pot(True), ground=DARK)),
    ),
    _t(
        "LI",
        "glass",
        "A glass of iced water standing on a table on a humid summer day.",
        "A cold glass covered in beads of condensed water.",
        "A perfectly dry glass.",
        (
            "glass beaded with condensation",
            scene(glass(WATER), dots((204, 125, 300, 290), 30, (8, 10), (250, 252, 255), (120, 160, 200))),
        ),
        ("dry glass", scene(glass(WATER))),
    ),
    _t(
        "LI",
        "mirror",
        "A bathroom mirror right after a long hot shower.",
        "A mirror fogged over with fine water droplets.",
        "A clear, sharp mirror reflection.",
        ("fogged mirror", mirror(True)),
        ("clear mirror reflection", mirror(False)),
    ),
    _t(
        "RU",
        "nail",
        "An iron nail left outside in the rain for several months.",
        "A brown, rusty iron nail.",
        "A shiny grey iron nail.",
        ("brown rusty nail", scene(nail(RUSTY, RUST))),
        ("shiny grey nail", scene(nail(STEEL))),
    ),
    _t(
        "RU",
        "bicycle chain",
        "An iron bicycle chain left outdoors through a wet winter.",
        "A chain covered in orange-brown rust.",
        "A clean, silvery chain.",
        ("rust-covered chain", scene(chain(RUSTY, RUST))),
        ("clean silver chain", scene(chain(STEEL))),
    ),
    _t(
        "IM",
        "glass",
        "Olive oil poured into a glass of water.",
        "Two separate layers: golden oil floating on clear water.",
        "A single, evenly mixed yellowish liquid.",
        ("oil layer on top of water", scene(glass(WATER, 140, layer=((232, 200, 70), 40)))),
        ("one mixed yellowish liquid", scene(glass((214, 214, 150), 140))),
    ),
    _t(
        "IM",
        "glass",
        "Vinegar and vegetable oil shaken in a glass, then left to stand for an hour.",
        "Oil separated into a clear layer above the vinegar.",
        "A cloudy liquid mixed all the way through.",
        ("oil separated above vinegar", scene(glass((200, 150, 110), 140, layer=((238, 214, 110), 46)))),
        ("cloudy fully mixed liquid", scene(glass((224, 200, 150), 140))),
    ),
    _t(
        "FR",
        "flame",
        "A pinch of copper chloride sprinkled into a Bunsen burner flame.",
        "A bright green flame.",
        "An ordinary orange flame.",
        ("green flame", scene(flame((60, 200, 90), (180, 250, 190)), ground=(90, 90, 96))),
        ("orange flame", scene(flame((240, 140, 40), (255, 220, 120)), ground=(90, 90, 96))),
    ),
    _t(
        "FR",
        "flame",
        "Strontium chloride held in a gas flame on a wire loop.",
        "A vivid crimson-red flame.",
        "A pale blue gas flame.",
        ("crimson-red flame", scene(flame((200, 20, 40), (255, 120, 120)), ground=(90, 90, 96))),
        ("blue gas flame", scene(flame((80, 120, 240), (190, 210, 255)), ground=(90, 90, 96))),
    ),
    _t(
        "LR",
        "seedling",
        "A potted sunflower seedling kept in a dark cupboard for three weeks.",
        "A pale, yellowish, spindly seedling with drooping leaves.",
        "A healthy, deep green seedling.",
        ("pale yellow drooping seedling", potted_plant(PALE, stem=(200, 200, 120), droop=True)),
        ("healthy green seedling", potted_plant(GREEN)),
    ),
    _t(
        "LR",
        "grass",
        "Lawn grass under a wooden board that lay on it for a month.",
        "A patch of pale yellow, flattened grass.",
        "Lush green grass.",
        ("pale yellow grass", grass(PALE)),
        ("lush green grass", grass(GREEN)),
    ),
    _t(
        "WR",
        "basil plant",
        "A potted basil plant that has not been watered for a month.",
        "A wilted basil plant with brown drooping leaves in cracked dry soil.",
        "A lush, green basil plant.",
        ("wilted brown plant, dry soil", potted_plant(BROWN, stem=(130, 110, 70), droop=True, soil=(170, 140, 100))),
        ("lush green basil", potted_plant(GREEN)),
    ),
    _t(
        "WR",
        "lawn",
        "A lawn after two months of drought.",
        "Dry, brown, patchy grass.",
        "A green, freshly watered lawn.",
        ("dry brown grass", grass(BROWN, ground=(170, 140, 100))),
        ("green lawn", grass((60, 160, 60))),
    ),
    _t(
        "SC",
        "maple tree",
        "A maple tree in late autumn.",
        "A maple tree with red and orange leaves, many fallen on the ground.",
        "A maple tree full of green summer leaves.",
        ("red-orange leaves, some fallen", scene(tree((210, 90, 40), fallen=(220, 120, 40)), ground=(150, 130, 90))),
        ("green summer leaves", scene(tree(GREEN), ground=(110, 150, 80))),
    ),
    _t(
        "SC",
        "oak tree",
        "An oak tree in the middle of winter.",
        "A bare oak tree without leaves, snow on the ground.",
        "An oak tree in full green leaf.",
        ("bare tree, snow on the ground", scene(tree(), ground=(248, 250, 252))),
        ("tree in full green leaf", scene(tree(GREEN), ground=(110, 150, 80))),
    ),
    _t(
        "RI",
        "mango",
        "An unripe mango, simple and realistic.",
        "A hard, green mango.",
        "A ripe yellow-orange mango.",
        ("hard green mango", scene(mango((90, 160, 60)))),
        ("ripe yellow-orange mango", scene(mango((250, 170, 40)))),
    ),
    _t(
        "RI",
        "banana",
        "A banana picked a week before it is ripe.",
        "A firm green banana.",
        "A ripe yellow banana with brown speckles.",
        ("firm green banana", scene(banana((110, 170, 60)))),
        ("ripe speckled yellow banana", scene(banana((245, 215, 60), spots=(110, 70, 30)))),
    ),
)


# --- rendering -------------------------------------------------------------------------------


def render(picture: Picture) -> bytes:
    """The picture as PNG bytes (W x H), its caption drawn small on a band at the bottom."""
    img = PILImage.new("RGB", (W, H), picture.background)
    draw = ImageDraw.Draw(img)
    for shape in picture.shapes:
        method = getattr(draw, shape.kind)
        if shape.kind in ("line", "arc"):
            method(shape.xy, *shape.angles, fill=shape.fill, width=shape.width)
        else:
            method(shape.xy, fill=shape.fill, outline=shape.outline, width=shape.width)
    draw.rectangle((0, CAPTION_TOP, W, H), fill=(250, 250, 250))
    font = ImageFont.load_default(size=15)
    draw.text((W // 2, (CAPTION_TOP + H) // 2), picture.caption, fill=(40, 40, 46), font=font, anchor="mm")
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


# --- seeding ---------------------------------------------------------------------------------


@dataclass
class SeedReport:
    created: Counter = field(default_factory=Counter)  # users, tuples, images, pairs
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # username, password, what they do


def seed() -> SeedReport:
    """Create the demo users and tuples with image pairs; a second call creates nothing."""
    report = SeedReport()
    User = get_user_model()
    for username, role, disciplines, password in USERS:
        # An existing account keeps its password: a real "admin" must not get a public one.
        user = User.objects.filter(username=username).first()
        known = user is None or user.check_password(password)
        _, created = people.ensure_user(
            username, role=role, disciplines=disciplines, password=password if user is None else None
        )
        report.created["users"] += created
        what = role + (f" ({', '.join(disciplines)})" if disciplines else "")
        report.logins.append((username, password if known else "(unchanged)", what))
    tasks = {t.code: t for t in Task.objects.filter(code__in={d.task for d in DEMO_TUPLES})}
    missing = sorted({d.task for d in DEMO_TUPLES} - set(tasks))
    if missing:
        raise ValueError(f"The demo needs the seeded tasks; missing: {', '.join(missing)}.")
    for item in DEMO_TUPLES:
        with transaction.atomic():
            prompt_tuple, outcome = catalog.upsert_tuple(
                implicit_prompt=item.implicit,
                task=tasks[item.task],
                explicit_prompt=item.explicit,
                superficial_prompt=item.superficial,
                subject=item.subject,
                source=SOURCE,
            )
            report.created["tuples"] += outcome == "created"
            if Pair.objects.filter(tuple=prompt_tuple, image_correct__generator=GENERATOR).exists():
                continue  # drawn before; also holds if another Pillow version would draw other bytes
            images = []
            for picture, kind in ((item.correct, Image.Kind.EXPLICIT), (item.wrong, Image.Kind.SUPERFICIAL)):
                image, created = catalog.store_image(
                    render(picture),
                    kind=kind,
                    tuple=prompt_tuple,
                    generator=GENERATOR,
                    seed=zlib.crc32(picture.caption.encode()),
                )
                report.created["images"] += created
                images.append(image)
            _, created = catalog.create_pair(prompt_tuple, *images)
            report.created["pairs"] += created
    return report

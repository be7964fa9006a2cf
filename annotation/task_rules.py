"""Keyword rules that guess the Science-T2I task of an implicit prompt (``import_prompts --auto-task``).

Prompt files such as ``reality_simple_300.json`` carry no category, yet every implicit prompt names
the condition that makes it a scientific puzzle ("without power", "in a dark room for weeks", "left
in the freezer overnight"). The rules below read that condition. They are tried **in order; the
first rule that matches wins**; a prompt that no rule matches is left without a task for an admin to
assign. A guess is only a starting point: experts still see the prompt, and an admin can change the
task. :func:`explain_task` says which rule gave a prompt its task and which words it matched.

A rule matches when its ``pattern`` is found in the prompt (case-insensitive), its ``also`` and
``subject`` patterns too where it has them, and its ``unless`` pattern is not. Vocabulary used below:
*liquid* = water, milk, juice, soda, cola, beer, wine, tea, coffee, soup, vinegar, a puddle, pond,
lake, river, trough...; *melts* = ice, ice cream, butter, chocolate, wax, candle, crayon, lipstick,
cheese, snow(man), soap, and confectionery (candy, caramel, toffee, fudge, marshmallow, lollipop,
gummy bears, jelly, truffles); *metal* = iron, steel, copper, bronze, brass, silver, tin... and
metal things (nail, bolt, chain, anchor, bicycle, shovel, padlock, railing, pipe); *plant* = tree,
bush, hedge, seedling, flower, grass, lawn, herbs, named trees and flowers...; *hot* = desert,
summer, sun(ny/light), hot, heat(wave), warm, stove, radiator, fireplace, campfire, oven, car
dashboard, tropics, beach, July, August. The rules, in the order they are tried:

==  ==  =============================================================================================
 1  EL  ``without (electricity|power)``, ``powerless``, ``unplugged``, power cut / outage / failure,
        blackout (not blackout curtains), dead / flat / drained battery, battery run out or removed,
        plug pulled, not plugged in, disconnected from the mains, power switched off
 2  GR  without / no gravity, gravity-free, zero gravity, zero-g, weightless, microgravity, outer
        space, in space, a space station / shuttle / capsule, spacecraft, spaceship, orbit, free fall
 3  RI  ``unripe``, ``ripe``, overripe, ripen(ed/ing), premature(ly), undeveloped, immature; picked /
        harvested too early / too soon / before ...; before (the) harvest
 4  LR  darkness named — dark room / closet / cellar / basement / cupboard, darkness, pitch-black,
        lightless, no / without (sun)light, in the dark, deprived of light, blackout curtains — *and* a
        plant, ``potted``, kept / grown / growing, or ``for`` days / weeks ("a chair in a dark room" is
        not LR)
 5  LR  shut away from light — in a closet / cupboard / cabinet / drawer / cellar / basement / storage
        room / attic, windowless, without windows, a sealed / closed / cardboard box, under / beneath /
        covered by a board / plank / tarp / bucket / mat / paddling pool — *and* a plant (or garden,
        patch, field, meadow)
 6  WR  watering withheld: rarely / never / not / hasn't been watered, nobody watered, forgot to water,
        unwatered, without water(ing), never given water, not had water
 7  WR  drought, dry spell, parched, (bone-)dry soil, without / no rain, hosepipe ban — *and* a plant
        (or garden, field...): "a pond after months without rain" is evaporation
 8  ME  something that *melts* near a heat source (campfire, bonfire, fireplace, fire, flame, radiator,
        stove, oven, hot plate, grill, hair dryer) — before FR: "a marshmallow over a campfire"
 9  FR  burning, burns, ignites / ignited, flame(s), on fire, set alight / ablaze, catching fire, lit
        with a match / lighter
10  FR  campfire, bonfire, burner, Bunsen, blowtorch — *and* a chemical (…chloride, …nitrate,
        …carbonate, …sulfate, powder, salt, lithium, sodium, potassium, strontium, barium, boric acid,
        magnesium, methanol, ethanol, sulfur): "a copper pot over a campfire" is no flame test
11  LI  taken / just / straight out of the fridge / freezer — before SO: a can just out of the freezer
        sweats, a can left *in* the freezer freezes
12  SC  a season or month (spring / summer / autumn / winter, in the fall, fall colours, foliage,
        snowfall, first frost, in October) in a prompt that *starts* with a plant ("A weeping willow by
        the river in winter") — before SO and ME; not spring water / hot springs
13  SO  frost(y), frozen, freez..., subzero, polar, arctic, Antarctica, glacial, below zero / freezing,
        minus ... degrees, -20 °C, cold snap, blizzard, ice storm — *and* a liquid ("frosting" is not
        frost; a frosty *tree* is seasonal, a frosty *window* condensation)
14  SO  winter, midwinter, January, February, December — *and* a liquid among the prompt's first five
        words ("A glass of juice left outside on a winter night"), unless steaming
15  ME  *hot* or fifty to ninety degrees — *and* something that *melts*; before SC so that "chocolate in
        summer" and "a snowman on a warm spring afternoon" are melting, and before EV
16  EV  hundreds of degrees, several hundred degrees, heated to, evaporat..., 300 °C / 500 degrees
17  EV  boil(ing), simmer(ing) — *and* a liquid, oil or a pot / pan / kettle (a boiled egg is not EV)
18  EV  *hot* — *and* a liquid — *and* a duration: for hours / days / weeks, all day / afternoon /
        summer, until dry, after months (a dish of water in the desert sun for a week)
19  EV  *hot* — *and* a puddle
20  RU  exposed to oxygen / air / moisture / rain / salt / the sea / the weather, open air, in the rain —
        *and* a metal
21  RU  for weeks / months / years / decades / a century / a long time, after (ten) years, years of,
        many (rainy) winters, all / every winter, through a (wet) winter — *and* a metal; after SO / ME /
        EV, before SC
22  RU  wet / damp / soaking / salt water — *and* overnight — *and* a metal (steel wool in the sink)
23  IM  an oil (olive oil, motor oil...), petrol, gasoline, diesel, kerosene, mercury, hexane,
        chloroform, turpentine, paraffin, benzene, toluene, or "containing both" — *and* a second
        liquid (water, vinegar, vodka, soy sauce, mercury, the sea...); not oil paintings, oil lamps,
        oil changes ("a bottle of olive oil" or "spaghetti with oil and garlic" stay unassigned)
24  AB  drop / drip / spill / splash / touches / soaked / dab / dipped / dunked / landing on /
        standing in / pressed onto / blotted — *and* an absorbent material (felt, napkin, cotton, paper
        (towel), cardboard, cloth, tablecloth, towel, linen, carpet, rug, shirt, sock, wool, sponge,
        tissue, sugar cube, bread, chalk, filter paper) — before DI
25  DI  added / poured / dripped / stirred / sprinkled / squeezed / released into a glass / cup / mug /
        beaker / jar / bottle / bowl / pot / jug / tank of ...; a tea bag, steeping, dissolving
26  DI  dye, ink, food colouring, permanganate — *and* water / liquid / a pond / tank / beaker
27  DI  in / into a glass / cup / mug / jar / bowl... of — *and* something soluble (sugar, salt, honey,
        coffee, cocoa, milk, cream, cordial) — before BU: "a sugar cube dropped into a cup of tea"
28  BU  ``water-filled``, filled with / full of water, bobbing, floating / sinking in or on water (a
        pool, pond, tank, bucket, glass...), ``holds ... in water``, a tank / tub / basin / bucket / bowl
        / sink of water, in a glass / jug / jar of water, an object dropped / placed / put / thrown /
        tossed / lowered / pushed / submerged into water, a pool, lake, sea, tank, tub, aquarium... —
        after DI, so a drop of ink dropped into water stays diffusion
29  RI  a fruit (apple, banana, pear, peach, tomato, avocado, mango, berries...) ``for`` days / weeks
        ("an apple left out for weeks")
30  SC  ``(in|during|through|at|by|of|until) [up to three words] (spring|summer|autumn|fall|winter)``,
        springtime, wintertime, midwinter, midsummer, autumn, fall foliage — unless the prompt is
        about people (a man, a family, a picnic, tourists...) and names no plant, or says spring water
31  SC  in January ... December, snowfall, first frost, foliage — *and* a plant anywhere
32  LI  ``humid``, condensation, ``liquef``, dew, ``cold``, cooling, shower, steam(ing), fogged, misted,
        frosty, chilled, chilly, a cool night / morning, air-conditioned — after RU (humid *and* a metal
        *and* a long time is rust) and SO (a freezing liquid); unless about a person ("a woman taking a
        shower", "a man on a cold winter day")
==  ==  =============================================================================================

Decisions made on ``reality_simple_300.json``: its humid prompts ("a ceramic mug in an extremely
humid, room-temperature setting") name non-metals and no elapsed time, so they are condensation
(LI), not rust; only humidity *for a long time* on a metal is RU. "A little bit of milk added to a
glass of soda water" is diffusion even without a dye, so DI keys on "added to a glass of". On that
file every prompt gets a task, and the hand-written prompts of :mod:`annotation.demo` get theirs.

The rules were widened on a labelled set of ~330 prompts written in the style of the dataset
(confectionery in hot cars, drinks in freezers and winter nights, plants in closets, metals by the
sea, ...) and ~80 everyday scenes that must stay unassigned: ``tests/support/data/task_rules_prompts.json``,
checked in ``tests/annotation/test_task_rules.py``. Conditions are separate searches, never one ``A.*B``
pattern, so a long prompt costs linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One keyword rule: ``pattern`` and, where set, ``also`` and ``subject`` must be found in the
    prompt, and ``unless`` must not be. ``why`` says in words what the rule looks for."""

    task: str
    pattern: re.Pattern
    subject: re.Pattern | None = None
    unless: re.Pattern | None = None
    why: str = ""
    also: re.Pattern | None = None

    def match(self, text: str) -> tuple[str, str | None] | None:
        """The words the conditions and the subject found, or ``None`` when the rule does not apply."""
        patterns = [p for p in (self.pattern, self.also) if p is not None]
        found = [m for m in (p.search(text) for p in patterns) if m is not None]
        if len(found) < len(patterns) or (self.unless is not None and self.unless.search(text)):
            return None
        condition = " … ".join(f.group(0) for f in found)
        if self.subject is None:
            return condition, None
        subject = self.subject.search(text)
        return (condition, subject.group(0)) if subject else None

    def matches(self, text: str) -> bool:
        return self.match(text) is not None


@dataclass(frozen=True)
class Explanation:
    """Why a prompt got its task: the first rule that matched and the words it matched."""

    task: str
    rule: int  # 1-based position in RULES, the number in the module docstring's table
    why: str
    condition: str
    subject: str | None

    def __str__(self) -> str:
        words = repr(self.condition) + (f" + {self.subject!r}" if self.subject else "")
        return f"{self.task}: rule {self.rule} ({self.why}) matched {words}"


def _re(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


def _any(*words: str) -> str:
    """Alternatives (regex fragments) matched as whole words."""
    return r"\b(?:" + "|".join(words) + r")\b"


# --- vocabularies ----------------------------------------------------------------------------

_LIQUIDS = (
    r"water|rainwater|seawater|salt water|milk|juice|soda|cola|lemonade|beer|wine|champagne|liquid|soup",
    r"broth|tea|coffee|hot chocolate|cocoa|syrup|vinegar|smoothie|perfume|alcohol|puddles?|ponds?|lakes?",
    r"rivers?|streams?|waterfalls?|fountains?|birdbaths?|troughs?",
)
_LIQUID = _re(_any(*_LIQUIDS))
# A prompt *about* a liquid: one among its first five words ("A glass of orange juice left outside...").
_LIQUID_FIRST = _re(r"^\W*(?:[\w']+[\s-]+){0,4}" + _any(*_LIQUIDS))
_MELTS = _re(
    _any(
        r"ice cubes?|ice blocks?|ice cream|ice sculptures?|ice lolly|ice|popsicles?|butter|chocolates?|wax|candles?",
        r"crayons?|lipsticks?|lard|cheese|snowman|snowballs?|snow|gummy bears?|gummy|gummies|marshmallows?",
        r"candy|candies|caramels?|toffees?|fudge|lollipops?|jelly beans?|jelly|jellies|jello|gelatin|truffles?",
        r"soap bar|soap",
    )
)
_METAL = _re(
    _any(
        r"cast-iron|iron|steel wool|steel|copper|bronze|brass|silver|tin|zinc|aluminum|aluminium|metal|metallic|nails?",
        r"bolts?|screws?|chains?|chained|anchors?|bicycle|wrench|horseshoe|shovel|spade|rake|padlock|hinges?",
        r"railings?|pipes?|hull|doorknob",
    )
)
# What seasons, light and watering act on.
_PLANT_NOUNS = (
    r"trees?|bush|bushes|shrubs?|hedges?|plants?|houseplants?|seedlings?|sprouts?|saplings?|flowers?|ferns?",
    r"grass|lawn|moss|vines?|orchard|forest|woods|poplars?|oaks?|maples?|birch|birches|willows?|pines?|firs?",
    r"spruces?|cedars?|beech|elms?|chestnut|ginkgo|larch|magnolias?|roses?|tulips?|daisy|daisies|lil(?:y|ies)",
    r"orchids?|geraniums?|basil|mint|parsley|thyme|rosemary|chives|herbs?|cress|beans?|peas?|lettuce|spinach",
    r"cactus|cacti|succulents?|bonsai|ivy|hydrangeas?|lilac|sunflowers?|petunias?|potato(?:es)?|bulbs?",
    r"cornfield|wheat|crops?|vineyard",
)
_PLANT = _re(_any(*_PLANT_NOUNS))
_GREEN = _re(_any(*_PLANT_NOUNS, r"potted|garden|patch|flower ?beds?|fields?|meadow"))
# A prompt *about* a plant: it starts with one, at most two words in ("A weeping willow by the river").
_NOT_A_PREPOSITION = r"(?!(?:by|beside|near|next|under|behind|with|in|on|at|and|over)\b)"
_PLANT_FIRST = _re(
    r"^\W*(?:a|an|the|some)?\s*(?:" + _NOT_A_PREPOSITION + r"[\w']+[\s-]+){0,2}"
    r"(?:" + "|".join(_PLANT_NOUNS) + r")\b"
)
_FRUIT = _re(
    _any(
        r"apples?|bananas?|pears?|peach(?:es)?|tomato(?:es)?|avocados?|mangos?|mangoes|strawberr(?:y|ies)|grapes?",
        r"oranges?|lemons?|plums?|kiwis?|melons?|pineapples?|papayas?|cherr(?:y|ies)|apricots?|figs?|berr(?:y|ies)",
    )
)
_CHEMICAL = _re(
    r"\w*(?:chloride|nitrate|carbonate|sulfate|sulphate|sulfide|chlorate|oxide|powder|salt)\b|"
    + _any(r"lithium|sodium|potassium|strontium|barium|boric acid|borax|magnesium|methanol|ethanol", r"sulfur|sulphur")
)
_OILY = r"(?:\w+ )?oil|petrol|gasoline|diesel|kerosene|mercury|hexane|chloroform|turpentine|paraffin|benzene|toluene"
_SOLUBLE = _re(_any(r"sugar|salt|honey|syrup|coffee|cocoa|milk|cream|cordial|dye|ink|colou?ring|permanganate"))
_SEASON = r"(?:mid-?)?(?:spring|summer|autumn|fall|winter)(?:time)?"
# A season named anywhere; "fall" only as a season ("in the fall", "fall foliage"), not the verb.
_SEASON_NAMED = (
    r"\b(?:mid-?)?(?:spring|summer|autumn|winter)(?:time)?\b|\bsnowfall\b|\bfirst frost\b|\bfoliage\b"
    r"|\b(?:in|during|through|by|until) (?:the )?(?:early |late )?fall\b|\bfall (?:colou?rs?|leaves)\b"
)
_IN_MONTH = (
    r"\b(?:in|during|through|by|until) (?:early |late |mid-?)?(?:january|february|march|april|may|june"
    r"|july|august|september|october|november|december)\b"
)
_NOT_A_SEASON = r"\bspring (?:water|onions?|rolls?|mattress)|\bhot springs?\b"
_HOT = _any(
    r"desert|summer|summertime|sunny|sun|sunlight|sunshine|hot|heated|heat|heatwave|heat wave|stove|warm",
    r"radiator|fireplace|campfire|bonfire|oven|dashboard|tropics|tropical|beach|july|august|sauna|heater",
    r"hair ?dryer|greenhouse",
)
_HEAT_SOURCE = _any(
    r"campfire|bonfire|fireplace|fire|flames?|radiator|heater|stove|oven|hot plate|grill",
    r"barbecue|hair ?dryer|blowtorch|heat lamp",
)
_N = r"(?:\w+ ){0,2}"  # up to two words: "for two weeks", "for a few days"
_DAYS = r"\bfor " + _N + r"(?:days?|weeks?|months?|years?|decades?|centur(?:y|ies)|a long time|ages)\b"
_HOURS = (
    _DAYS + r"|\bfor " + _N + r"hours?\b|\ball (?:day|afternoon|week|summer|night)\b"
    r"|\buntil (?:dry|evening)\b|\bafter " + _N + r"(?:days|weeks|months)\b"
)
_YEARS = (
    r"\bfor " + _N + r"(?:weeks|months|years?|decades?|centur(?:y|ies)|a long time|ages)\b"
    r"|\bafter (?:\w+ ){0,3}(?:years|decades|centur(?:y|ies))\b|\b(?:years|decades) of\b"
    r"|\bmany (?:\w+ )?(?:winters|years|seasons)\b|\b(?:all|every) winter\b"
    r"|\b(?:through|over) (?:a |the )?(?:\w+ )?(?:winter|year|season)\b"
)
_PERSON = r"m[ae]n|wom[ae]n|people|person|child|children|kids?|boys?|girls?|family|couple|crowd|tourists?"
_PEOPLE = _any(_PERSON, r"picnic|party|wedding|festival|coat|jacket|castle|city|street|skiers?|skating")
_VESSEL = r"glass|cup|mug|beaker|jar|bottle|bowl|pot|jug|pitcher|carafe"
_WATER_BODY = r"water|pool|lake|pond|river|sea|ocean|tank|tub|bathtub|basin|bucket|aquarium|sink|bath"

RULES: tuple[Rule, ...] = (
    Rule(
        "EL",
        _re(
            r"\bwithout (?:any |a )?(?:electricity|power)\b|\bpowerless\b|\bunplugged\b"
            r"|\bpower (?:cut|outage|failure)|\bblackout\b(?! (?:curtains?|blinds?|drapes?))"
            r"|\bno (?:electricity|power)\b|\b(?:dead|flat|drained|empty|depleted) batter"
            r"|\bbatter(?:y|ies) (?:has |have )?(?:run out|ran out|died|removed|taken out)"
            r"|\bplug (?:pulled|removed)|\bnot plugged in\b"
            r"|\bdisconnected from the (?:mains|power|socket|grid)\b"
            r"|\b(?:electricity|power) (?:has been |is |was )?(?:shut|switched|turned|cut) off\b"
            r"|\bpower (?:cable|cord|lead|supply) (?:cut|removed|pulled|unplugged)\b"
        ),
        why="no electricity: without power, unplugged, power cut, blackout, dead battery",
    ),
    Rule(
        "GR",
        _re(
            r"\bwithout gravity\b|\bno gravity\b|\bgravity-free\b|\bzero[- ]g(?:ravity)?\b|\bweightless"
            r"|\bmicrogravity\b|\bouter space\b|\bspace (?:station|shuttle|capsule)\b"
            r"|\bspace ?(?:craft|ship)\b|\bin space\b|\borbit|\bfree[- ]fall"
        ),
        why="no gravity: zero gravity, weightless, a spacecraft, orbit, free fall",
    ),
    Rule(
        "RI",
        _re(
            r"\b(?:unripe|ripe|overripe|premature|prematurely|undeveloped|immature|ripen\w*)\b"
            r"|\b(?:picked|harvested|plucked|gathered)\b (?:\w+ ){0,4}(?:too (?:early|soon)|early|before)\b"
            r"|\bbefore (?:the )?harvest"
        ),
        why="ripeness named: unripe, overripe, premature, picked too early, before harvest",
    ),
    Rule(
        "LR",
        _re(
            r"\bdark (?:room|closet|cellar|basement|cupboard|cabinet|shed|garage)\b|\bdarkness\b"
            r"|\bpitch[- ](?:black|dark)\b|\blightless\b|\bno (?:sun)?light\b|\bwithout (?:any )?(?:sun)?light\b"
            r"|\bin the dark\b|\bblackout (?:curtains?|blinds?)\b|\bdeprived of (?:sun)?light\b"
            r"|\bnever (?:exposed to|sees?|seen) (?:the )?(?:sun)?light\b"
        ),
        _re(_any(*_PLANT_NOUNS, r"potted|kept|grown|growing") + "|" + _DAYS),
        why="a plant (or something kept for weeks) in the dark",
    ),
    Rule(
        "LR",
        _re(
            r"\b(?:in|inside|into) (?:a|an|the) (?:\w+ ){0,2}(?:closet|cupboard|cabinet|drawer|cellar"
            r"|basement|storage room|attic|wardrobe)\b|\bwindowless\b|\b(?:without|no) windows\b"
            r"|\b(?:sealed|closed|shut|cardboard|shoe) box\b"
            r"|\b(?:under|beneath|covered (?:by|with)) (?:a|an|the) (?:\w+ ){0,2}(?:board|plank|tarp"
            r"|tarpaulin|bucket|box|pot|mat|doormat|rock|stone|sheet|pool|paddling pool|tent|trampoline"
            r"|cover)\b"
        ),
        _GREEN,
        why="a plant shut away from light: a closet, cellar, drawer, under a board or bucket",
    ),
    Rule(
        "WR",
        _re(
            r"\b(?:rarely|never|seldom|not|hasn't|has not|hadn't|had not|wasn't|was not|haven't|have not)"
            r"(?: been)? watered\b|\bnobody (?:has )?watered\b|\bforg(?:ot|otten) to water\b|\bunwatered\b"
            r"|\bwithout (?:any )?water(?:ing)?\b|\bnever given (?:any )?water\b|\bnot had (?:any )?water\b"
        ),
        why="watering withheld: rarely / never watered, forgot to water, without water",
    ),
    Rule(
        "WR",
        _re(
            r"\bdrought\b|\bdry spell\b|\bparched\b|\b(?:bone[- ])?dry (?:soil|earth|ground|compost)\b"
            r"|\b(?:without|no) (?:any )?rain(?:fall)?\b|\b(?:hosepipe|watering) ban\b"
        ),
        _GREEN,
        why="a plant in a drought, a dry spell, parched or dry soil, without rain",
    ),
    Rule(
        "ME",
        _re(_HEAT_SOURCE),
        _MELTS,
        why="something that melts near a heat source (campfire, fireplace, radiator, stove), before FR",
    ),
    Rule(
        "FR",
        _re(
            r"\bburn(?:ing|s|ed)?\b|\bignit(?:es?|ed|ing)\b|\bflames?\b|\bon fire\b"
            r"|\bset (?:alight|ablaze)\b|\bcatch(?:es|ing)? fire\b|\bcaught fire\b"
            r"|\blit (?:with|by) (?:a |an )?(?:match|lighter|torch|spark)"
        ),
        why="something burning: burning, ignites, flame, on fire, set alight, catching fire",
    ),
    Rule(
        "FR",
        _re(_any(r"campfire|bonfire|burner|bunsen|blow ?torch")),
        _CHEMICAL,
        why="a salt, powder or fuel put into a campfire, bonfire, burner or blowtorch",
    ),
    Rule(
        "LI",
        _re(
            r"\b(?:taken|straight|fresh|just) (?:out )?(?:of|from) the (?:fridge|refrigerator|freezer"
            r"|cooler)\b"
        ),
        why="a cold thing just out of the fridge or freezer sweats (condensation), before SO",
    ),
    Rule(
        "SC",
        _re(_SEASON_NAMED + "|" + _IN_MONTH),
        _PLANT_FIRST,
        _re(_NOT_A_SEASON),
        why="a prompt about a plant (it starts with one) in a season or month, before SO and ME",
    ),
    Rule(
        "SO",
        _re(
            r"\bfrost(?:s|y|ed)?\b|\bfrozen\b|\bfreez|\bsub-?zero\b|\bpolar\b|\barctic\b|\bantarctica?\b"
            r"|\bglacial\b|\bbelow (?:zero|freezing)\b|\bminus \w+(?: \w+)?(?: of)? degrees\b"
            r"|(?:^|[\s(])[-−–]\s?\d+(?:\.\d+)?\s?°|\bcold snap\b|\bblizzard\b|\bice storm\b"
        ),
        _LIQUID,
        why="a liquid in frost, a freezer, subzero or arctic cold, minus degrees, a blizzard",
    ),
    Rule(
        "SO",
        _re(_any(r"winter|wintry|midwinter|january|february|december")),
        _LIQUID_FIRST,
        _re(r"\bsteam"),
        why="a prompt about a liquid (it starts with a drink, a pond, a trough) out in winter",
    ),
    Rule(
        "ME",
        _re(_HOT + r"|\b(?:fifty|sixty|seventy|eighty|ninety|[4-9]\d) degrees\b"),
        _MELTS,
        why="something that melts somewhere hot: desert, summer, sun, hot car, dashboard, sixty degrees",
    ),
    Rule(
        "EV",
        _re(
            r"\bhundreds? of degrees\b|\bseveral hundred degrees\b|\bheated to\b|\bevaporat"
            r"|\b(?:[1-9]\d{2,}|[1-9],\d{3}) ?(?:degrees|°)"
        ),
        why="something heated to hundreds of degrees, evaporating",
    ),
    Rule(
        "EV",
        _re(r"\bboil(?:s|ing|ed)?\b|\bsimmer(?:s|ing|ed)?\b"),
        _re(_any(*_LIQUIDS, r"oil|pot|pan|saucepan|kettle|cauldron")),
        why="a liquid or a pot boiling or simmering",
    ),
    Rule("EV", _re(_HOT), _LIQUID, also=_re(_HOURS), why="a liquid left somewhere hot for hours, days or weeks"),
    Rule("EV", _re(_HOT), _re(r"\bpuddles?\b"), why="a puddle in the sun or heat"),
    Rule(
        "RU",
        _re(
            r"\bexposed to (?:the )?(?:oxygen|air|moisture|rain|salt|sea|weather|elements)|\bopen air\b"
            r"|\bin the rain\b"
        ),
        _METAL,
        why="a metal exposed to air, rain or the sea",
    ),
    Rule("RU", _re(_YEARS), _METAL, why="a metal left for weeks, years or decades"),
    Rule(
        "RU",
        _re(r"\b(?:wet|damp|moist|soaking|salt water)\b"),
        _METAL,
        also=_re(r"\bovernight\b"),
        why="a wet metal left overnight",
    ),
    Rule(
        "IM",
        _re(r"\b(?:" + _OILY + r")\b|\bcontaining both\b"),
        _re(_any(*_LIQUIDS, r"mercury|vodka|soy sauce|ocean|sea|containing both")),
        _re(r"\boil[- ](?:paint\w*|lamp|rig|tanker|change|filter)|\bchanging the oil\b"),
        why="an oil, fuel, solvent or mercury together with another liquid",
    ),
    Rule(
        "AB",
        _re(
            r"\b(?:drops?|drips?|dripped|spill(?:s|ed)?|spilt|splash(?:es|ed)?|touch(?:es|ing|ed)"
            r"|soak(?:s|ed)?|dabs?|dipped|dipping|dunked|pressed (?:onto|into|against)|blotted|landing on"
            r"|standing in|absorb(?:s|ed|ing)?)\b"
        ),
        _re(
            _any(
                r"felt|napkin|cotton balls?|cotton|paper towels?|filter paper|blotting paper|paper|cardboard",
                r"tablecloth|cloth|fabric|sponge|tissue|towel|linen|carpet|rug|t-shirt|shirt|jeans|denim|sock",
                r"wool|canvas|gauze|bandage|sugar cube|bread|biscuit|cookie|chalk|coffee filter|kitchen roll",
            )
        ),
        why="a liquid dropped, spilled or dipped onto an absorbent material, before DI",
    ),
    Rule(
        "DI",
        _re(
            r"\b(?:added|poured|dripped|stirred|sprinkled|squeezed|squirted|spooned|mixed|released) (?:in)?to "
            r"(?:a|an|the) (?:\w+ ){0,2}(?:" + _VESSEL + r"|tank) of\b|\btea ?bag\b|\bsteep(?:s|ed|ing)\b"
            r"|\bdissolv"
        ),
        why="a dye, ink or drink added to a glass or cup of liquid; a tea bag, steeping, dissolving",
    ),
    Rule(
        "DI",
        _re(r"\b(?:dye|ink|food colou?ring|permanganate)\b"),
        _re(r"\b(?:water|liquid|pond|tank|aquarium|beaker)\b"),
        why="a dye or ink in water",
    ),
    Rule(
        "DI",
        _re(r"\b(?:in|into|(?<!next )to) (?:a|an|the) (?:\w+ ){0,2}(?:" + _VESSEL + r") of\b"),
        _SOLUBLE,
        why="something soluble (sugar, salt, milk, coffee) in a glass or cup of liquid, before BU",
    ),
    Rule(
        "BU",
        _re(
            r"\bwater-filled\b|\b(?:filled with|full of) water\b|\bbobbing\b"
            r"|\b(?:float(?:s|ing)?|sink(?:s|ing)?) (?:in|on) (?:a |an |the )?(?:\w+ ){0,2}"
            r"(?:" + _WATER_BODY + r"|glass|bowl|jar)\b"
            r"|\bholds? (?:\w+ ){1,6}in water\b|\b(?:tank|tub|bathtub|basin|pool|bucket|bowl|sink) of water\b"
            r"|\b(?:in|into) (?:a|an|the) (?:\w+ ){0,2}(?:glass|jug|jar) of (?:\w+ ){0,2}water\b"
            r"|\b(?:dropped|placed|put|thrown|tossed|lowered|released|sunk|pushed|submerged) (?:\w+ ){0,5}?"
            r"(?:in|into|under) (?:a|an|the) (?:\w+ ){0,2}(?:" + _WATER_BODY + r")\b"
        ),
        why="an object placed, dropped or floating in water, after DI",
    ),
    Rule("RI", _re(_DAYS), _FRUIT, why="a fruit left out for days or weeks"),
    Rule(
        "SC",
        _re(
            r"\b(?:in|during|through|throughout|at|by|over|of|until) (?:\w+ ){0,3}" + _SEASON + r"\b"
            r"|\b(?:autumn|springtime|wintertime|midwinter|midsummer|fall foliage)\b"
        ),
        unless=_re(_NOT_A_SEASON + r"|^(?!.*" + _any(*_PLANT_NOUNS) + r").*" + _PEOPLE),
        why="a season (in spring, during autumn, midwinter), unless the prompt is about people, not plants",
    ),
    Rule(
        "SC",
        _re(_IN_MONTH + r"|\bsnowfall\b|\bfirst frost\b|\bfoliage\b"),
        _PLANT,
        why="a plant in a month, after the first snowfall or frost",
    ),
    Rule(
        "LI",
        _re(
            r"\bhumid|\bcondens|\bliquef|\bdew\b|\bcold\b|\bcooling\b|\bshower\b|\bsteam(?:y|ed|ing)?\b"
            r"|\bfogged\b|\bmisted\b|\bfrosty\b|\bchill(?:ed|y)\b|\bcool(?:,? \w+)? (?:night|morning|evening)\b"
            r"|\bair-condition"
        ),
        unless=_re(_any(_PERSON)),
        why="humid air, cold surfaces, steam, dew, a frosty window, unless about a person",
    ),
)


def explain_task(prompt: str) -> Explanation | None:
    """Which rule gives ``prompt`` its task and the words it matched, or ``None`` if no rule matches."""
    for number, rule in enumerate(RULES, start=1):
        found = rule.match(prompt)
        if found:
            return Explanation(rule.task, number, rule.why, *found)
    return None


def guess_task(prompt: str) -> str | None:
    """The code of the first rule that matches ``prompt``, or ``None``."""
    explanation = explain_task(prompt)
    return explanation.task if explanation else None

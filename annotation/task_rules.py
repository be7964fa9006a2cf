"""Keyword rules that guess the Science-T2I task of an implicit prompt (``import_prompts --auto-task``).

Prompt files such as ``reality_simple_300.json`` carry no category, yet every implicit prompt names
the condition that makes it a scientific puzzle ("without power", "in a dark room for weeks"). The
rules below read that condition. They are tried **in order; the first rule that matches wins**; a
prompt that no rule matches is left without a task for an admin to assign. A guess is only a
starting point: experts still see the prompt, and an admin can change the task.

A rule matches when its ``pattern`` is found in the prompt (case-insensitive) and, where it has
one, its ``subject`` pattern is found too. The rules, in the order they are tried:

====  ==========================================================================================
EL    ``without (electricity|power)``, ``powerless``, ``unplugged``, plug pulled, power cut / outage,
      dead battery
GR    ``without gravity``, zero gravity, weightless, microgravity, outer space, space station, orbit,
      free fall
RI    ``unripe``, ``ripe``, overripe, premature, undeveloped, immature (fruit and crops)
LR    a ``dark room`` (or closet, cellar, basement, cupboard), darkness, no light,
      ``without (sun)light``, under a board / plank / tarp
WR    ``rarely watered``, never / not (been) watered, ``without water``, drought, ``dry soil``
FR    ``burning``, ``burns``, ``ignites``, flame, on fire, set alight
SO    frost, ``freez``, subzero, polar, arctic, glacial, below zero, minus ... degrees — *and* a
      liquid (water, milk, juice, a puddle...): a frosty *tree* is seasonal, not SO
ME    desert, summer, hot/heated/sunny, stove, sixty degrees... — *and* something that melts (ice,
      butter, chocolate, wax, candle, crayon, lipstick, lard, cheese, ice cream); before SC so that
      "chocolate in summer" is melting, and before EV
EV    hundreds of degrees, ``boil``, heated to, evaporat; or (second rule) a liquid somewhere hot
      ``for`` days / weeks / years (a dish of water in the desert sun for a week)
RU    long exposure (exposed to oxygen/air/moisture, ``open air``, ``left outside``, in the rain,
      humid ... for weeks/years) *and* a metal (iron, steel, copper, bronze, brass, silver, nail...)
IM    a liquid that does not mix: ``and (oil|petrol|gasoline|diesel|kerosene|mercury)``,
      ``oil and ...``, or oil and water anywhere in the prompt
AB    a drop / spill / splash / touch / dip / press onto an absorbent material (felt, napkin,
      cotton, paper towel, cardboard, cloth, fabric, sponge, tissue) — checked before DI
DI    something added / poured / dripped / stirred into a glass, cup, beaker, jar or bottle of
      liquid; dye, ink or food colouring in water; a tea bag, steeping, dissolving
BU    ``water-filled``, ``filled with water``, floating, ``holds ... in water``, a tank / tub /
      basin / pool / bucket of water, an object dropped / placed / put / thrown into water — after
      DI, so a drop of ink dropped into water stays diffusion
SC    a season: ``(in|during|through) [up to three words] (spring|summer|autumn|fall|winter)``,
      autumn — before LI, so that "a tree in cold winter" is seasonal
LI    ``humid``, condensation, ``liquef``, dew, ``cold``, cooling, shower, steam, fogged, misted —
      after RU (humid *and* a metal *and* a long time is rust) and SO (a freezing liquid)
====  ==========================================================================================

Decisions made on ``reality_simple_300.json``: its humid prompts ("a ceramic mug in an extremely
humid, room-temperature setting") name non-metals and no elapsed time, so they are condensation
(LI), not rust; only humidity *for a long time* on a metal is RU. "A little bit of milk added to a
glass of soda water" is diffusion even without a dye, so DI keys on "added to a glass of". On that
file every prompt gets a task, and the hand-written prompts of :mod:`annotation.demo` get theirs
(both checked in ``tests/test_task_rules.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    task: str
    pattern: re.Pattern
    subject: re.Pattern | None = None

    def matches(self, text: str) -> bool:
        return bool(self.pattern.search(text)) and (self.subject is None or bool(self.subject.search(text)))


def _re(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


_LIQUID = _re(r"\b(water|milk|juice|soda|wine|liquid|soup|tea|coffee|lemonade|broth|syrup|puddle|pond|lake)\b")
_MELTS = _re(
    r"\b(ice|ice cubes?|ice blocks?|ice cream|popsicles?|butter|chocolates?|wax|candles?|crayons?|lipsticks?"
    r"|lard|cheese|snowman|snowballs?|gummy)\b"
)
_METAL = _re(
    r"\b(iron|steel|copper|bronze|brass|silver|tin|zinc|aluminum|aluminium|metal|metallic|nails?|bolts?"
    r"|screws?|chains?|anchors?|bicycle|wrench|horseshoe)\b"
)
_OILY = r"(oil|petrol|gasoline|diesel|kerosene|mercury)"
_HOT = r"\b(desert|summer|sunny|sun|hot|heated|heat|stove)\b"
_LONG_TIME = r"\bfor (a |one |many |several |a few )?(days?|weeks?|months?|years?|decades?|a long time|ages)\b"

RULES: tuple[Rule, ...] = (
    Rule("EL", _re(r"\bwithout (any )?(electricity|power)\b|\bpowerless\b|\bunplugged\b|\bpower (cut|outage|failure)"
                   r"|\bno (electricity|power)\b|\bdead batter|\bplug (pulled|removed)")),
    Rule("GR", _re(r"\bwithout gravity\b|\bzero[- ]gravity\b|\bweightless|\bmicrogravity\b"
                   r"|\bouter space\b|\bspace station\b|\borbit|\bfree[- ]fall")),
    Rule("RI", _re(r"\b(unripe|ripe|overripe|premature|undeveloped|immature|ripening)\b")),
    Rule("LR", _re(r"\bdark (room|closet|cellar|basement|cupboard)\b|\bdarkness\b|\bno (sun)?light\b"
                   r"|\bwithout (any )?(sun)?light\b|\bin the dark\b"
                   r"|\bunder (a|an|the) (\w+ ){0,2}(board|plank|tarp)\b")),
    Rule("WR", _re(r"\b(rarely|never|seldom|not)( been)? watered\b|\bunwatered\b|\bwithout (any )?water(ing)?\b"
                   r"|\bdrought\b|\bdry soil\b")),
    Rule("FR", _re(r"\bburn(ing|s|ed)?\b|\bignit(es?|ed|ing)\b|\bflames?\b|\bon fire\b|\bset alight\b")),
    Rule("SO", _re(r"\bfrost|\bfreez|\bsub-?zero\b|\bpolar\b|\barctic\b|\bantarctic\b|\bglacial\b|\bbelow zero\b"
                   r"|\bminus \w+( of)? degrees\b"), _LIQUID),
    Rule("ME", _re(_HOT + r"|\b(fifty|sixty|seventy|eighty|ninety|[5-9]\d) degrees\b"), _MELTS),
    Rule("EV", _re(r"\bhundreds? of degrees\b|\bseveral hundred degrees\b|\bboil(s|ing|ed)?\b|\bheated to\b"
                   r"|\bevaporat")),
    Rule("EV", _re(_HOT + ".*" + _LONG_TIME), _LIQUID),
    Rule("RU", _re(r"\bexposed to (the )?(oxygen|air|moisture|rain|salt|sea)|\bopen air\b"
                   r"|\bleft (out|outside|outdoors)\b"
                   r"|\bin the rain\b|\b(humid|damp|moist|wet)\b.*" + _LONG_TIME), _METAL),
    Rule("IM", _re(r"\band (\w+ ){0,2}" + _OILY + r"\b|\b" + _OILY + r" and \w+"
                   r"|\b" + _OILY + r"\b.*\bwater\b|\bwater\b.*\b" + _OILY + r"\b")),
    Rule("AB", _re(r"\b(drops?|drips?|dripped|spill(s|ed)?|splash(es|ed)?|touch(es|ing)?|soak(s|ed)?|dab|dipped"
                   r"|pressed|absorb(s|ed|ing)?)\b"),
         _re(r"\b(felt|napkin|cotton|paper towel|paper|cardboard|cloth|fabric|sponge|tissue|towel|linen)\b")),
    Rule("DI", _re(r"\b(added|poured|dripped|stirred) (in)?to (a|an|the) (glass|cup|beaker|jar|bottle) of\b"
                   r"|\b(dye|ink|food colou?ring)\b.*\b(water|liquid)\b|\btea ?bag\b|\bsteep|\bdissolv")),
    Rule("BU", _re(r"\bwater-filled\b|\bfilled with water\b|\bfloat(s|ing)?\b|\bholds? .* in water\b"
                   r"|\b(tank|tub|basin|pool|bucket) of water\b"
                   r"|\b(dropped|placed|put|thrown|tossed) (in|into) .*\bwater\b")),
    Rule("SC", _re(r"\b(in|during|through) (\w+ ){0,3}(spring|summer|autumn|fall|winter)\b|\bautumn")),
    Rule("LI", _re(r"\bhumid|\bcondens|\bliquef|\bdew\b|\bcold\b|\bcooling\b|\bshower\b|\bsteam(y|ed)?\b"
                   r"|\bfogged\b|\bmisted\b")),
)


def guess_task(prompt: str) -> str | None:
    """The code of the first rule that matches ``prompt``, or ``None``."""
    for rule in RULES:
        if rule.matches(prompt):
            return rule.task
    return None

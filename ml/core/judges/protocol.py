"""The judging protocols: what an LMM judge is asked, how its answers are read, and what they add up to.

**Pairwise** (the Science-T2I paper's evaluation of large multimodal models): the judge sees the implicit
prompt and two images and answers ``{"choice": "image-1"}`` or ``{"choice": "image-2"}``; every item is
asked in both image orders (correct image first, then wrong image first) and the two results are averaged,
so a judge that always picks the first image scores 0.5, not 1. Optionally with chain of thought (the
judge reasons first, the last JSON object counts).

**Rubric** (generated images): the tuple's ``scene_scoring`` rubric is a gate (``{"scene": true|false}``:
does the image show the scene at all?); an image that passes is graded against ``real_scoring``
(``{"score": 0..3}``: how scientifically real the outcome is). A failed gate scores 0.

An answer that cannot be read, or a request that failed, is counted as such and never turned into a
right or a wrong answer. Backend-agnostic: the requests go through any :class:`~.backend.Backend`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from PIL import Image

from ml.core.judges.backend import Backend, Reply, Request
from science_t2i.format import TupleRecord, load_image

PAIRWISE_TEMPLATE = "pairwise-v1"
RUBRIC_TEMPLATE = "rubric-v1"

PAIRWISE_SYSTEM = "You are an expert scientist who checks whether images depict the world as science says it is."
_PAIRWISE_TASK = (
    'Prompt: "{prompt}"\n\n'
    "The prompt implies a scientific outcome without stating it. Image 1 is the first image above and "
    "Image 2 the second. Exactly one of them shows the scientifically correct outcome of the prompt. "
    "Which one?\n"
)
_ANSWER_FORMAT = '{{"choice": "image-1"}} or {{"choice": "image-2"}}'
PAIRWISE_PLAIN = _PAIRWISE_TASK + f"Answer with only a JSON object and nothing else: {_ANSWER_FORMAT}."
PAIRWISE_COT = (
    _PAIRWISE_TASK + "First reason step by step: what does the prompt imply will be seen, and what does each "
    f"image show? Then end your answer with a JSON object on its own line: {_ANSWER_FORMAT}."
)
PLAIN_MAX_NEW_TOKENS = 32
COT_MAX_NEW_TOKENS = 512

SCENE_PROMPT = (
    "Look at the image. Scene requirement: {scene_scoring}\n\n"
    "Does the image show this scene (judge only whether the required scene and objects are there, not "
    'whether it is scientifically right)? Answer with only a JSON object: {{"scene": true}} or '
    '{{"scene": false}}.'
)
REALITY_PROMPT = (
    'The image was generated for the prompt: "{implicit_prompt}"\n\n'
    "Grade how scientifically real the outcome shown is, with this rubric (0 = wrong, 3 = fully correct):\n"
    "{real_scoring}\n\n"
    'Answer with only a JSON object: {{"score": N}} where N is 0, 1, 2 or 3.'
)
RUBRIC_MAX_NEW_TOKENS = 32

ImageSource = Image.Image | Callable[[], Image.Image]


def pairwise_request(implicit_prompt: str, first: Image.Image, second: Image.Image, *, cot: bool = False) -> Request:
    """The pairwise question about ``first`` (Image 1) and ``second`` (Image 2), images in that order."""
    template = PAIRWISE_COT if cot else PAIRWISE_PLAIN
    return Request(
        text=template.format(prompt=implicit_prompt),
        images=(first, second),
        system=PAIRWISE_SYSTEM,
        max_new_tokens=COT_MAX_NEW_TOKENS if cot else PLAIN_MAX_NEW_TOKENS,
    )


def _key_values(text: str, key: str) -> list[str]:
    """Every value of ``key`` in ``text``, lower case: a key (quoted or not), a colon, a value (quoted or not)
    that stops at a quote, brace, comma or line end."""
    pattern = rf"""["']?\b{key}\b["']?\s*[:=]\s*["']?([^"'{{}},\n]*)"""
    return [value.strip().lower() for value in re.findall(pattern, text, flags=re.IGNORECASE)]


_CHOICE_VALUE = re.compile(r"(?:image|img|picture)?\s*[-_#]?\s*([12])")
_IMAGE_MENTION = re.compile(r"\b(?:image|img|picture)\s*[-_#]?\s*([12])\b", re.IGNORECASE)


def parse_choice(text: str | None) -> int | None:
    """1 or 2 from a pairwise answer, or None when it says nothing unambiguous.

    The last ``choice`` key wins (so with chain of thought, the final JSON object counts, whatever the
    reasoning quoted before it); code fences, prose around it, single quotes, ``Image 1`` / ``image_1`` /
    ``1``, case and whitespace do not matter. A ``choice`` that is neither image (``"both"``,
    ``"neither"``) gives None. Without any ``choice`` key, an answer that is just ``1``/``2`` or mentions
    exactly one of the two images by name (``Image 2 is correct.``) counts; one that names both, or
    neither, gives None.
    """
    if not text:
        return None
    values = _key_values(text, "choice")
    if values:
        match = _CHOICE_VALUE.fullmatch(values[-1])
        return int(match.group(1)) if match else None
    bare = text.strip().strip("`'\". \n").strip()
    if bare in ("1", "2"):
        return int(bare)
    mentioned = set(_IMAGE_MENTION.findall(text))
    return int(mentioned.pop()) if len(mentioned) == 1 else None


@dataclass
class PairItem:
    """One pair to judge: the implicit prompt, the correct and the wrong image (images, or zero-argument
    callables that load one, so a large set is read chunk by chunk)."""

    key: str
    implicit_prompt: str
    correct: ImageSource
    wrong: ImageSource


@dataclass
class OrderResult:
    """One order of one pair: which image was shown first, what the judge said, what it was read as."""

    correct_first: bool
    choice: int | None
    text: str | None
    error: str = ""

    @property
    def picked_correct(self) -> bool | None:
        """Whether the parsed choice is the correct image; None when the answer did not parse."""
        if self.choice is None:
            return None
        return self.choice == (1 if self.correct_first else 2)


@dataclass
class PairVerdict:
    """A pair's result over both orders. ``score``: the mean over the orders that parsed of 1 (correct image
    picked) or 0; None when no order parsed."""

    key: str
    orders: list[OrderResult] = field(default_factory=list)

    @property
    def parsed(self) -> int:
        """How many orders gave a readable choice."""
        return sum(order.choice is not None for order in self.orders)

    @property
    def score(self) -> float | None:
        """Mean correctness over the parsed orders, or None."""
        picks = [order.picked_correct for order in self.orders if order.picked_correct is not None]
        return sum(picks) / len(picks) if picks else None

    @property
    def first_position_picks(self) -> int:
        """How many parsed answers chose Image 1 (position bias shows as this staying high in both orders)."""
        return sum(order.choice == 1 for order in self.orders)

    def as_dict(self) -> dict:
        """JSON-ready: the orders and the derived figures."""
        return {
            "key": self.key,
            "orders": [asdict(order) for order in self.orders],
            "score": self.score,
            "parsed": self.parsed,
            "first_position_picks": self.first_position_picks,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PairVerdict:
        """The verdict :meth:`as_dict` wrote (the derived figures are computed again, not read)."""
        return cls(data["key"], [OrderResult(**order) for order in data["orders"]])


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    if size < 1:
        raise ValueError(f"chunk must be at least 1, not {size}.")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _complete(backend: Backend, requests: list[Request]) -> list[Reply]:
    replies = backend.complete(requests) if requests else []
    if len(replies) != len(requests):
        raise RuntimeError(f"Backend {backend.name!r} gave {len(replies)} replies to {len(requests)} requests.")
    return replies


def judge_pairs(
    backend: Backend,
    items: Iterable[PairItem],
    *,
    cot: bool = False,
    chunk: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_chunk: Callable[[list[PairVerdict]], None] | None = None,
) -> list[PairVerdict]:
    """Ask ``backend`` about every pair in both orders; one ``complete`` call per ``chunk`` items (2 × chunk
    requests), whose images alone are loaded at once.

    ``on_progress(done, total)`` (items) and ``on_chunk(verdicts)`` follow each chunk (a caller that saves
    chunks can resume); ``should_stop()`` is asked before each chunk after the first, and when true the
    verdicts so far are returned. :class:`~.backend.BudgetExhausted` from the backend propagates: the
    chunks already finished have reached ``on_chunk``.
    """
    items = list(items)
    verdicts: list[PairVerdict] = []
    for index, part in enumerate(_chunks(items, chunk)):
        if index and should_stop is not None and should_stop():
            break
        requests = []
        for item in part:
            correct, wrong = load_image(item.correct), load_image(item.wrong)
            requests.append(pairwise_request(item.implicit_prompt, correct, wrong, cot=cot))
            requests.append(pairwise_request(item.implicit_prompt, wrong, correct, cot=cot))
        replies = _complete(backend, requests)
        done = []
        for n, item in enumerate(part):
            orders = [
                OrderResult(correct_first, parse_choice(reply.text), reply.text, reply.error)
                for correct_first, reply in ((True, replies[2 * n]), (False, replies[2 * n + 1]))
            ]
            done.append(PairVerdict(item.key, orders))
        verdicts += done
        if on_chunk is not None:
            on_chunk(done)
        if on_progress is not None:
            on_progress(len(verdicts), len(items))
    return verdicts


def _pair_figures(verdicts: Sequence[PairVerdict]) -> dict:
    scores = [v.score for v in verdicts if v.score is not None]
    orders = [order for v in verdicts for order in v.orders]
    parsed = sum(v.parsed for v in verdicts)

    def failures(correct_first: bool) -> int:
        return sum(o.text is not None and o.choice is None for o in orders if o.correct_first == correct_first)

    return {
        "n": len(scores),
        "n_items": len(verdicts),
        "accuracy": sum(scores) / len(scores) if scores else None,
        "unparsed": len(verdicts) - len(scores),
        "parse_failures": {"correct_first": failures(True), "wrong_first": failures(False)},
        "request_errors": sum(o.text is None for o in orders),
        "first_position_share": sum(v.first_position_picks for v in verdicts) / parsed if parsed else None,
    }


def summarize_verdicts(verdicts: Sequence[PairVerdict], groups: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """Pairwise figures, overall and per group.

    ``n`` items scored (at least one order parsed) of ``n_items``; ``accuracy`` the mean score over the
    scored items (None when none); ``unparsed`` items with no readable order; ``parse_failures`` per order
    (a reply whose text gave no choice); ``request_errors`` (orders whose request failed);
    ``first_position_share`` the share of parsed answers that picked Image 1 (0.5 is unbiased, 1.0 always
    the first). ``groups`` maps a grouping's name to ``{key: group}`` (e.g. ``{"by_task": {...},
    "by_discipline": {...}}``, see :func:`record_groups`); each adds ``{name: {group: figures}}``; a verdict
    whose key has no group counts in the overall figures only.
    """
    return _grouped(verdicts, groups, _pair_figures)


def _grouped(verdicts: Sequence, groups: Mapping[str, Mapping[str, str]] | None, figures: Callable) -> dict:
    result = figures(verdicts)
    for name, mapping in (groups or {}).items():
        by_group: dict[str, list] = {}
        for verdict in verdicts:
            group = mapping.get(verdict.key)
            if group:
                by_group.setdefault(group, []).append(verdict)
        result[name] = {group: figures(by_group[group]) for group in sorted(by_group)}
    return result


GROUPINGS = (("by_task", "task"), ("by_discipline", "discipline"), ("by_kind", "kind"))


def record_groups(records: Sequence[TupleRecord], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """The ``groups`` argument of the summaries from tuples and their keys: ``by_task``, ``by_discipline``
    and ``by_kind`` (records without a value are left out of that grouping)."""
    return {
        name: {
            key: getattr(record, attribute)
            for key, record in zip(keys, records, strict=True)
            if getattr(record, attribute)
        }
        for name, attribute in GROUPINGS
    }


# ---------------------------------------------------------------------------------------------- rubric


def scene_request(scene_scoring: str, image: Image.Image) -> Request:
    """The scene gate: does ``image`` show what ``scene_scoring`` requires?"""
    return Request(
        text=SCENE_PROMPT.format(scene_scoring=scene_scoring.strip()),
        images=(image,),
        system=PAIRWISE_SYSTEM,
        max_new_tokens=RUBRIC_MAX_NEW_TOKENS,
    )


def reality_request(implicit_prompt: str, real_scoring: str, image: Image.Image) -> Request:
    """The reality grade of ``image`` (generated for ``implicit_prompt``) against the ``real_scoring`` rubric."""
    return Request(
        text=REALITY_PROMPT.format(implicit_prompt=implicit_prompt, real_scoring=real_scoring.strip()),
        images=(image,),
        system=PAIRWISE_SYSTEM,
        max_new_tokens=RUBRIC_MAX_NEW_TOKENS,
    )


_YES, _NO = {"true", "yes"}, {"false", "no"}


def parse_scene(text: str | None) -> bool | None:
    """The scene gate's answer: the last ``scene`` key (``true``/``false``/``yes``/``no``), else a reply
    whose only yes/no/true/false words are all of one kind; None otherwise."""
    if not text:
        return None
    values = _key_values(text, "scene")
    if values:
        return True if values[-1] in _YES else False if values[-1] in _NO else None
    words = {word.lower() for word in re.findall(r"\b(?:yes|no|true|false)\b", text, flags=re.IGNORECASE)}
    if words and words <= _YES:
        return True
    if words and words <= _NO:
        return False
    return None


def parse_reality(text: str | None) -> int | None:
    """The reality grade 0–3: the last ``score`` key, else a reply that is just the number; a value out of
    range or not a whole number gives None."""
    if not text:
        return None
    values = _key_values(text, "score")
    value = values[-1] if values else text.strip().strip("`'\". \n").strip()
    match = re.fullmatch(r"(\d+)(?:\.0+)?(?:\s*/\s*3)?", value)
    if match is None:
        return None
    number = int(match.group(1))
    return number if 0 <= number <= 3 else None


@dataclass
class RubricItem:
    """One generated image to grade, with its tuple's implicit prompt and rubrics (``image`` may be a
    zero-argument callable that loads it)."""

    key: str
    implicit_prompt: str
    scene_scoring: str
    real_scoring: str
    image: ImageSource


# What became of a rubric item, in RubricVerdict.status.
GRADED, SCENE_FAILED, UNPARSED, REQUEST_ERROR, NO_RUBRIC = "graded", "scene_failed", "unparsed", "error", "no_rubric"


@dataclass
class RubricVerdict:
    """A graded image. ``scene``: the gate's answer (None when skipped or unreadable); ``reality``: the 0–3
    grade (None when not asked or unreadable); ``score``: ``reality``, or 0 when the gate failed, or None
    (``status`` says why: unparsed, error, no_rubric). ``*_text`` are the raw replies."""

    key: str
    scene: bool | None
    reality: int | None
    score: int | None
    status: str
    scene_text: str | None = None
    reality_text: str | None = None
    error: str = ""

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RubricVerdict:
        """The verdict :meth:`as_dict` wrote."""
        return cls(**data)


def grade_images(
    backend: Backend,
    items: Iterable[RubricItem],
    *,
    chunk: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_chunk: Callable[[list[RubricVerdict]], None] | None = None,
) -> list[RubricVerdict]:
    """Grade every image with the rubric protocol, ``chunk`` items at a time: first the scene gate for the
    chunk (one ``complete`` call), then the reality grade (a second call) for the images whose scene is
    shown. A failed gate scores 0 without a reality request.

    An item whose ``scene_scoring`` is empty skips the gate (its image goes straight to the reality grade);
    an item with an empty ``real_scoring`` cannot be graded: no request, score None, status ``no_rubric``.
    An unreadable answer at either step gives score None (``unparsed``), a failed request None
    (``error``). Progress, stopping and :class:`~.backend.BudgetExhausted` as in :func:`judge_pairs`.
    """
    items = list(items)
    verdicts: list[RubricVerdict] = []
    for index, part in enumerate(_chunks(items, chunk)):
        if index and should_stop is not None and should_stop():
            break
        done = _grade_chunk(backend, part)
        verdicts += done
        if on_chunk is not None:
            on_chunk(done)
        if on_progress is not None:
            on_progress(len(verdicts), len(items))
    return verdicts


def _grade_chunk(backend: Backend, part: Sequence[RubricItem]) -> list[RubricVerdict]:
    verdicts: dict[int, RubricVerdict] = {}
    images: dict[int, Image.Image] = {}
    gated = []
    for n, item in enumerate(part):
        if not item.real_scoring.strip():
            verdicts[n] = RubricVerdict(item.key, None, None, None, NO_RUBRIC)
            continue
        images[n] = load_image(item.image)
        if item.scene_scoring.strip():
            gated.append(n)
    scene_replies = _complete(backend, [scene_request(part[n].scene_scoring, images[n]) for n in gated])
    scenes: dict[int, tuple[bool | None, Reply]] = {}
    for n, reply in zip(gated, scene_replies, strict=True):
        scene = parse_scene(reply.text)
        scenes[n] = (scene, reply)
        if reply.text is None:
            verdicts[n] = RubricVerdict(part[n].key, None, None, None, REQUEST_ERROR, error=reply.error)
        elif scene is None:
            verdicts[n] = RubricVerdict(part[n].key, None, None, None, UNPARSED, scene_text=reply.text)
        elif not scene:
            verdicts[n] = RubricVerdict(part[n].key, False, None, 0, SCENE_FAILED, scene_text=reply.text)
    graded = [n for n in images if n not in verdicts]
    requests = [reality_request(part[n].implicit_prompt, part[n].real_scoring, images[n]) for n in graded]
    for n, reply in zip(graded, _complete(backend, requests), strict=True):
        scene, scene_reply = scenes.get(n, (None, None))
        scene_text = scene_reply.text if scene_reply is not None else None
        reality = parse_reality(reply.text)
        status = REQUEST_ERROR if reply.text is None else UNPARSED if reality is None else GRADED
        verdicts[n] = RubricVerdict(part[n].key, scene, reality, reality, status, scene_text, reply.text, reply.error)
    return [verdicts[n] for n in range(len(part))]


def _reality_figures(verdicts: Sequence[RubricVerdict]) -> dict:
    scores = [v.score for v in verdicts if v.score is not None]
    count = {status: sum(v.status == status for v in verdicts) for status in (SCENE_FAILED, UNPARSED, REQUEST_ERROR)}
    return {
        "reality": sum(scores) / len(scores) / 3 * 100 if scores else None,
        "n": len(scores),
        "n_items": len(verdicts),
        "scene_failed": count[SCENE_FAILED],
        "unparsed": count[UNPARSED],
        "request_errors": count[REQUEST_ERROR],
        "no_rubric": sum(v.status == NO_RUBRIC for v in verdicts),
    }


def reality_summary(verdicts: Sequence[RubricVerdict], groups: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """The normalised reality score ``mean(score) / 3 × 100`` over the graded images (a failed scene gate
    counts as 0), overall and per group.

    Figures: ``reality`` (None when nothing was graded), ``n`` graded of ``n_items``, ``scene_failed``
    (included in ``n`` with score 0), ``unparsed``, ``request_errors``, ``no_rubric`` (the last three left
    out of ``n``). ``groups`` as in :func:`summarize_verdicts`: ``{grouping: {key: group}}``, each adding
    ``{grouping: {group: figures}}``.
    """
    return _grouped(verdicts, groups, _reality_figures)

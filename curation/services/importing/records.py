"""What a row becomes: records ready to write (:class:`Item`, one per pair of a row), the tuple fields and
decisions they carry, and the checks of their fields and image paths.

**Pairs.** A row with ``n`` explicit and ``m`` superficial images gives ``max(n, m)`` pairs, pair ``i`` =
(explicit[i % n], superficial[i % m]), so every image is in a pair (the published train rows hold several
images per side). Every wording of each prompt is kept: the first is the prompt, the others its
paraphrases (the tuple's ``*_paraphrases``), at most ``MAX_PARAPHRASES`` per prompt, each at most
``MAX_TEXT`` characters. The rubrics ``scene_scoring`` and ``real_scoring`` are stored on the tuple (at most
``MAX_RUBRIC`` characters each).

**Labels.** A row states which image is correct. In published data it is always the explicit image
(``label`` expected). Our combined export carries ``label`` (expected/other/both/neither, relative to the
catalogue's *expected* image) and writes the image the experts judged correct as ``explicit_image``
(JSONL: ``correct_image``); so for ``label == "other"`` the catalogue's expected image is the row's
superficial image: the pair is made as (image_correct = the superficial-column image, kind ``explicit``;
image_wrong = the explicit-column image, kind ``superficial``) and labelled ``other`` — an exported version
imports into a fresh database as the same pairs, labels and decisions. ``both``/``neither`` rows are in the
catalogue's orientation already.

**Decisions.** With ``decisions="import"`` (the default) every pair gets the row's label as an imported
decision (:func:`curation.services.consensus.record_imported_decision`) with its provenance: ``source``
(the file), ``row``, ``split``, ``dataset`` (``published``, ``platform export`` when the row has our
``label``/``pair_id`` columns, or ``tuples file`` for JSONL tuples without them) and, when the row has
them, ``outcome`` (our ``consensus`` column), ``agreement``, ``n_judgements`` and ``label``. A pair that
has a decision of its own here (judgements at k, an adjudication, gold) keeps it. ``decisions="open"``
leaves new pairs open for annotation, with no decision.

**Untrusted paths.** This is the platform's importer, for files that may come from anyone: an image path
in a row must be relative and stay inside the folder of the file that names it — absolute paths, ``..``
components and symbolic links pointing outside are per-row errors (``science_t2i.format`` itself trusts its
operator's paths). The job and the API only read under ``settings.IMPORT_ROOTS``
(:func:`.job.resolve_import_path`).

**Defaults never change stored tuples.** The scene derived from the split and the default source label
(the file or folder name) are set on *new* tuples only: a version's train split holds complex scenes too,
and re-importing an export must not relabel where a tuple came from. A scene or source given explicitly
(argument, or a row's own ``scene``/``source``) is written like any other field. Tasks: :mod:`.tasks`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from annotation.models import PromptTuple, Task, normalise_prompt
from curation.models import Label
from curation.services.importing.base import (
    MAX_IMAGES_PER_SIDE,
    MAX_PARAPHRASES,
    MAX_PATH_CHARS,
    MAX_PROVENANCE_CHARS,
    MAX_RUBRIC,
    MAX_SHORT,
    MAX_TEXT,
    RowError,
    shown,
)
from curation.services.importing.tasks import TaskChoice, Tasks


@dataclass
class Item:
    """One pair ready to write (or a tuple without images): the upsert_tuple arguments, the two images in
    the catalogue's orientation (``explicit`` = the expected-correct one, stored with kind explicit), and
    the decision to record."""

    key: tuple[str, int | None]
    fields: dict
    explicit: object | None = None  # science_t2i.format.ImageRef
    superficial: object | None = None
    create_only: tuple[str, ...] = ()  # fields that are defaults for a new tuple, never changes to a stored one
    columns: tuple[str, str] = ("explicit_image", "superficial_image")  # the images' names in the input
    claim: str = Label.EXPECTED  # what the row says of this pair, relative to its expected image
    label: str | None = None  # the decision to record; None: the pair stays open
    decision: dict = field(default_factory=dict)  # the decision's provenance


@dataclass
class Row:
    file: str
    number: int
    items: list[Item] = field(default_factory=list)
    error: str | None = None
    choice: TaskChoice | None = None


@dataclass(frozen=True)
class Options:
    source: str
    scene: str | None
    tasks: Tasks
    task_default: Task | None
    allow_no_task: bool
    source_is_default: bool = False
    auto_task: bool = False
    merge_same_prompt: bool = False
    decisions: str = "import"
    merges: dict = field(default_factory=dict)  # normalised prompt → Task, filled after pass 1 (.tasks)


def checked_text(value, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _wordings(values: list, name: str) -> list[str]:
    """Every wording of one prompt, checked: strings, each within MAX_TEXT, at most MAX_PARAPHRASES."""
    if len(values) > MAX_PARAPHRASES:
        raise RowError(f"{name} has {len(values)} wordings; the limit is {MAX_PARAPHRASES}")
    return [text for text in (checked_text(v, name, MAX_TEXT) for v in values) if text]


def check_image_count(value, column: str) -> None:
    if isinstance(value, list) and len(value) > MAX_IMAGES_PER_SIDE:
        raise RowError(f"{column} holds {len(value)} images; the limit is {MAX_IMAGES_PER_SIDE}")


def decision_fields(values: dict, *, file: str, number: int, split: str, platform: str) -> tuple[str, dict]:
    """The row's claim (its ``label``, else expected) and the provenance of the decision it carries."""
    label = values.get("label")
    claim: str
    if label is None or label == "":
        claim = Label.EXPECTED
    elif isinstance(label, str) and label.strip().lower() in Label.values:
        claim = label.strip().lower()
    else:
        raise RowError(f"label must be one of {', '.join(Label.values)}, not {shown(label)}")
    has_ours = values.get("label") not in (None, "") or values.get("pair_id") is not None
    provenance = {"source": file, "row": number, "split": split, "dataset": "platform export" if has_ours else platform}
    outcome = values.get("consensus")
    if outcome not in (None, ""):
        if not isinstance(outcome, str) or len(outcome) > 32:
            raise RowError(f"consensus must be an outcome name, not {shown(outcome)}")
        provenance["outcome"] = outcome.strip()
    agreement = values.get("agreement")
    if agreement is not None:
        if (
            isinstance(agreement, bool)
            or not isinstance(agreement, int | float)
            or not math.isfinite(agreement)
            or not 0 <= agreement <= 1
        ):
            raise RowError(f"agreement must be a share between 0 and 1, not {shown(agreement)}")
        provenance["agreement"] = float(agreement)
    n_judgements = values.get("n_judgements")
    if n_judgements is not None:
        if isinstance(n_judgements, bool) or not isinstance(n_judgements, int) or not 0 <= n_judgements <= 10**6:
            raise RowError(f"n_judgements must be a count, not {shown(n_judgements)}")
        provenance["n_judgements"] = n_judgements
    if has_ours and label not in (None, ""):
        provenance["label"] = claim
    return claim, provenance


def make_items(
    record,
    *,
    choice: TaskChoice,
    scene: str | None,
    opts: Options,
    provenance: dict,
    rubrics: dict,
    claim: str,
    decision: dict,
    columns: tuple[str, str],
    subject=None,
    source=None,
) -> list[Item]:
    """The row's items: one per pair (see **Pairs**), or one without images when the record has none."""
    implicit = checked_text(record.implicit_prompt, "implicit_prompt", MAX_TEXT)
    if not implicit:
        raise RowError("implicit prompt is missing or empty")
    wordings = {
        name: _wordings(getattr(record, f"{name}_prompts") or [], f"{name}_prompt")
        for name in ("implicit", "explicit", "superficial")
    }
    create_only = []
    if not (opts.scene or scene):
        create_only.append("scene")
    scene = opts.scene or scene or (PromptTuple.Scene.COMPLEX if record.split == "test_C" else PromptTuple.Scene.SIMPLE)
    if not source and opts.source_is_default:
        create_only.append("source")
    size = len(json.dumps(provenance, default=str))
    if size > MAX_PROVENANCE_CHARS:
        raise RowError(f"provenance is {size} characters long as JSON; the limit is {MAX_PROVENANCE_CHARS}")
    if scene not in PromptTuple.Scene.values:
        raise RowError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {shown(scene)}")
    normalised = normalise_prompt(implicit)
    task = choice.task
    if choice.taskless and normalised in opts.merges:  # merge_same_prompt: join the tasked tuple
        task = opts.merges[normalised]
    explicit_prompt = checked_text(record.explicit_prompt, "explicit_prompt", MAX_TEXT)
    superficial_prompt = checked_text(record.superficial_prompt, "superficial_prompt", MAX_TEXT)
    fields = {
        "implicit_prompt": implicit,
        "explicit_prompt": explicit_prompt,
        "superficial_prompt": superficial_prompt,
        "subject": checked_text(subject if subject is not None else record.subject, "subject", MAX_SHORT),
        "source": checked_text(source, "source", MAX_SHORT) or opts.source,
        "scene": scene,
        "task": task,
        "provenance": provenance,
        "implicit_paraphrases": [w for w in wordings["implicit"] if w != implicit],
        "explicit_paraphrases": [w for w in wordings["explicit"] if w != explicit_prompt],
        "superficial_paraphrases": [w for w in wordings["superficial"] if w != superficial_prompt],
        "scene_scoring": checked_text(rubrics.get("scene_scoring"), "scene_scoring", MAX_RUBRIC),
        "real_scoring": checked_text(rubrics.get("real_scoring"), "real_scoring", MAX_RUBRIC),
    }
    key = (normalised, task.pk if task else None)
    if record.correct_image is None:
        return [Item(key, fields, create_only=tuple(create_only))]
    correct, wrong = record.correct_images, record.wrong_images
    label = claim if opts.decisions == "import" else None
    items = []
    for index in range(max(len(correct), len(wrong))):
        i, j = index % len(correct), index % len(wrong)
        names = (
            f"{columns[0]} {i + 1}" if len(correct) > 1 else columns[0],
            f"{columns[1]} {j + 1}" if len(wrong) > 1 else columns[1],
        )
        refs = (correct[i], wrong[j])
        if claim == Label.OTHER:  # the row's correct image is the catalogue's other image
            refs, names = refs[::-1], names[::-1]
        items.append(Item(key, fields, refs[0], refs[1], tuple(create_only), names, claim, label, decision))
    return items


def safe_image_path(value, folder: Path, column: str) -> None:
    """Refuse image paths that leave ``folder`` (absolute, ``..``, or a link pointing outside)."""
    if not isinstance(value, str) or not value:
        raise RowError(f"{column} must be a non-empty path")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise RowError(f"{column} {shown(value)}: not a usable path ({len(value)} characters)")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or Path(value).is_absolute() or (len(value) > 1 and value[1] == ":"):
        raise RowError(f"{column} {shown(value)}: absolute paths are refused; use a path relative to the file")
    if ".." in pure.parts:
        raise RowError(f"{column} {shown(value)}: paths may not contain '..'")
    base = folder.resolve()
    try:
        inside = (base / value).resolve().is_relative_to(base)
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
        raise RowError(f"{column} {shown(value)}: cannot be resolved ({exc.__class__.__name__})") from None
    if not inside:
        raise RowError(f"{column} {shown(value)} leads outside the file's folder")

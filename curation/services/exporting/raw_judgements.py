"""The raw judgements, one row each, as CSV or JSONL, streamed (curation/views_downloads.py serves them).

Scope: every judgement, or those of one dataset version's member pairs (gold pairs are never
members). Rows are read ``BATCH`` at a time with ``.values_list().iterator()`` and written one line
at a time, so memory stays flat whatever the number of judgements (the response is a
``StreamingHttpResponse`` over :func:`csv_lines` / :func:`jsonl_lines`).

**Who judged.** By default the annotator is a pseudonym: ``a-`` and 12 hex digits of an HMAC of the
user id keyed by ``SECRET_KEY`` and the export's scope (``all`` or ``version-<id>``), so one person has
the same pseudonym in every download of the same scope (their rows can be grouped, and a re-download
matches) but different ones in different scopes, and it cannot be reversed without the server's key.
Usernames only when asked for (``names=True``), and the file name says so.

**Spreadsheet safety.** A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading ``'`` (OWASP's CSV-injection defence), so a comment can never run as a formula
when the file is opened in a spreadsheet. JSONL values are written as they are (JSON is not evaluated).

The columns are listed once, in :data:`COLUMNS` (plus :data:`OPTIONAL_COLUMNS` where the judgement
has those fields).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator

from django.utils.crypto import salted_hmac

from annotation.models import Judgement

BATCH = 2000
FORMATS = ("csv", "jsonl")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# --- The columns: the one place to add one. ----------------------------------------------------------
# (column name, the Judgement value path it is read from). ``annotator`` is replaced by the pseudonym
# or username; ``label`` is the choice relative to the pair's expected image (see
# curation.services.consensus.label_of): ``expected``/``other`` for a chosen image, else the choice.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("judgement_id", "id"),
    ("pair_id", "pair_id"),
    ("task", "pair__tuple__task__code"),
    ("annotator", "annotator_id"),
    ("choice", "choice"),
    ("label", "chosen_image_id"),
    ("gold", "pair__is_gold"),
    ("flag_prompt_unclear", "flag_prompt_unclear"),
    ("flag_image_broken", "flag_image_broken"),
    ("flag_off_topic", "flag_off_topic"),
    ("comment", "comment"),
    ("time_spent_ms", "time_spent_ms"),
    ("leased_at", "lease__created_at"),
    ("judged_at", "created_at"),
)
# Fields added to Judgement later (the annotator's confidence and reasons): exported when the model has them.
OPTIONAL_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, name) for name in ("confidence", "reasons") if hasattr(Judgement, name)
)
_ALL = COLUMNS + OPTIONAL_COLUMNS
# Read along for the label, not written.
_EXPECTED = "pair__image_correct_id"


def column_names() -> list[str]:
    return [name for name, _ in _ALL]


def scope_of(version_id: int | None) -> str:
    return "all" if version_id is None else f"version-{version_id}"


def pseudonym(user_id: int, scope: str) -> str:
    """The stable, keyed pseudonym of an annotator within one export scope."""
    return "a-" + salted_hmac(f"scit2i.raw-judgements.{scope}", str(user_id)).hexdigest()[:12]


def judgements(version_id: int | None = None):
    """The judgements in scope, in id order."""
    rows = Judgement.objects.all()
    if version_id is not None:
        rows = rows.filter(pair__version_memberships__version_id=version_id)
    return rows.order_by("id")


def rows(version_id: int | None = None, *, names: bool = False) -> Iterator[dict]:
    """One dict per judgement, columns in :func:`column_names` order; read in batches."""
    scope = scope_of(version_id)
    paths = [path for _, path in _ALL]
    usernames: dict[int, str] = {}
    if names:
        from django.contrib.auth import get_user_model

        usernames = dict(
            get_user_model()
            .objects.filter(pk__in=judgements(version_id).order_by().values("annotator_id"))
            .values_list("pk", "username")
        )
    pseudonyms: dict[int, str] = {}
    names_in_order = column_names()
    values = judgements(version_id).values_list(*paths, _EXPECTED)
    for record in values.iterator(chunk_size=BATCH):
        row = dict(zip(names_in_order, record[:-1], strict=True))
        annotator = row["annotator"]
        if names:
            row["annotator"] = usernames.get(annotator, "")
        else:
            if annotator not in pseudonyms:
                pseudonyms[annotator] = pseudonym(annotator, scope)
            row["annotator"] = pseudonyms[annotator]
        chosen, expected = row["label"], record[-1]
        row["label"] = row["choice"] if chosen is None else ("expected" if chosen == expected else "other")
        for key in ("leased_at", "judged_at"):
            row[key] = row[key].isoformat() if row[key] is not None else None
        yield row


def safe_cell(value) -> str:
    """A CSV cell: None empty, booleans ``true``/``false``, lists as JSON, text defused against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Line:
    """A file-like object whose write returns the text (the csv module writes one row per call)."""

    def write(self, text: str) -> str:
        return text


def csv_lines(records: Iterable[dict]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(column_names())
    for record in records:
        yield writer.writerow([safe_cell(value) for value in record.values()])


def jsonl_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def filename(version_id: int | None, fmt: str, *, names: bool) -> str:
    base = "judgements-all" if version_id is None else f"judgements-version-{version_id}"
    return f"{base}{'-names' if names else ''}.{fmt}"

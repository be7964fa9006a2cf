"""The dataset import's limits, errors and report.

**Bounded reports.** Error messages name the row (line number in JSONL; row within its file in parquet;
0 for the file itself), the column and the reason; a value is quoted cut to 80 characters, a message to
``MAX_ERROR_CHARS``, so a 10 MB field cannot bloat the report or the job row. The listings of rows without
a task (``unassigned``) and of prompts met with and without a task (``same_prompt``) show at most
``MAX_LISTED_ROWS`` entries, each prompt cut to ``MAX_LISTED_PROMPT`` characters, next to their full counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from annotation.models import PROMPT_MAX_CHARS

FORMATS = ("auto", "parquet", "jsonl", "prompts")
DECISIONS = ("import", "open")  # record each pair's decision as imported, or leave the pairs open
MAX_TEXT = PROMPT_MAX_CHARS  # every prompt and paraphrase
MAX_RUBRIC = 20_000  # scene_scoring, real_scoring
MAX_PARAPHRASES = 100  # wordings of one prompt in one row
MAX_IMAGES_PER_SIDE = 100  # images in one row's explicit_image (or superficial_image) list
MAX_LISTED_ROWS = 100  # entries of the unassigned and same_prompt listings
MAX_LISTED_PROMPT = 200
MAX_SHORT = 200
MAX_LISTED_ERRORS = 1000
MAX_ERROR_CHARS = 1000  # an error message longer than this is cut (a row may hold a 10 MB value)
MAX_PROVENANCE_CHARS = 20_000  # a row's provenance, as JSON
MAX_PATH_CHARS = 4096
DEFAULT_BATCH_SIZE = 100
DEFAULT_SINGLE_TRANSACTION_MAX_BYTES = 1024**3
NO_TASK = "none"

Progress = Callable[[float, str], None]


class RowError(ValueError):
    """One row cannot be imported; the message says why."""


class ImportRefused(ValueError):
    """The request itself is refused (a path outside the import roots, an unknown format or task)."""


@dataclass
class DatasetImportReport:
    format: str = ""
    source: str = ""
    mode: str = ""  # "single" (one transaction), "batched" (one per batch) or "" (nothing written)
    dry_run: bool = False
    rows: int = 0
    records: int = 0
    tuples: dict = field(default_factory=lambda: {"created": 0, "updated": 0, "skipped": 0})
    images: dict = field(default_factory=lambda: {"created": 0, "skipped": 0})
    pairs: dict = field(default_factory=lambda: {"created": 0, "skipped": 0})
    decisions: dict = field(default_factory=lambda: {"recorded": 0, "unchanged": 0, "kept": 0})
    # rows imported (or, without a task default, refused) without a task: {"count", "rows": [{file, row,
    # prompt, reason}]}, and prompts met without a task that have a task elsewhere (see .tasks)
    unassigned: dict = field(default_factory=lambda: {"count": 0, "rows": []})
    same_prompt: dict = field(default_factory=lambda: {"count": 0, "rows": 0, "merged": 0, "prompts": []})
    options: dict = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    payload_bytes: int = 0  # the images read in pass 1

    def add_error(self, file: str, row: int, message: str) -> None:
        self.error_count += 1
        if len(message) > MAX_ERROR_CHARS:
            message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"file": file, "row": row, "error": message})

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict:
        errors = list(self.errors)
        if self.error_count > len(errors):
            errors.append(
                {"file": None, "row": None, "error": f"... and {self.error_count - len(errors)} more rows with errors"}
            )
        return {
            "format": self.format,
            "source": self.source,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "options": dict(self.options),
            "rows": self.rows,
            "records": self.records,
            "tuples": dict(self.tuples),
            "images": dict(self.images),
            "pairs": dict(self.pairs),
            "decisions": dict(self.decisions),
            "unassigned": {"count": self.unassigned["count"], "rows": list(self.unassigned["rows"])},
            "same_prompt": {**self.same_prompt, "prompts": list(self.same_prompt["prompts"])},
            "errors": errors,
            "error_count": self.error_count,
        }


def shown(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: error messages name a bad value without echoing 10 MB."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def listed_prompt(prompt: str) -> str:
    """A prompt as the listings show it: cut to ``MAX_LISTED_PROMPT`` characters."""
    return prompt if len(prompt) <= MAX_LISTED_PROMPT else prompt[:MAX_LISTED_PROMPT] + "..."

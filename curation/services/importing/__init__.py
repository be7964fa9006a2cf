"""Import Science-T2I datasets into the catalogue: tuples, images and pairs (``manage.py import_dataset``,
``POST /api/curation/imports/``).

Formats (``fmt="auto"`` picks by what ``path`` is):

* ``parquet`` — a Science-T2I parquet file, or a directory of ``*.parquet`` (recursive; the split of a file
  comes from its name or folder, see :func:`ml.core.data.parquet_split`). Both published row shapes:
  train-style rows (lists of paraphrased prompts; the first is used, the list is kept in the tuple's
  provenance) and test-style rows (strings); images are lists of ``{bytes, path}`` structs. Rows are read
  by :mod:`ml.core.data` (its per-row reader), so the platform and the ML code agree on the format.
* ``jsonl`` — one tuple per line, as :func:`ml.core.data.read_jsonl` reads it: ``implicit_prompt``,
  ``correct_image`` and ``wrong_image`` (image *paths*, relative to the file: image folders next to the
  file), optional ``explicit_prompt``, ``superficial_prompt``, ``task``, ``subject``, ``split``, plus the
  platform's ``scene``, ``source`` and ``provenance``. A line with neither image imports the tuple only.
* ``prompts`` — a JSON list of prompt records (``reality_simple_300.json``): handed to
  :func:`annotation.services.importing.import_prompts` unchanged (``auto`` picks it for a file starting with
  ``[``).

What is written, per record (one record = one explicit/superficial image pair of a row):
:func:`~annotation.services.catalog.upsert_tuple` (scene ``complex`` for split ``test_C``, else ``simple``,
unless a scene is given), :func:`~annotation.services.catalog.store_image` for the explicit image (kind
``explicit``) and the superficial image (kind ``superficial``), deduplicated by sha256, and
:func:`~annotation.services.catalog.create_pair` with the explicit image as the expected-correct one (the
i-th explicit image with the i-th superficial one).

How, in two passes; each part's decisions are written next to its code:

* :mod:`.reading` — the input formats: parquet and JSONL rows, readable once per pass, and ``auto``
  detection;
* :mod:`.records` — what a row becomes: its records, task, scene and source, and the checks of its fields
  and image paths (**tasks**, **untrusted paths**, **defaults never change stored tuples**);
* :mod:`.checking` — pass 1: every row checked and its images decoded before anything is written;
* :mod:`.writing` — pass 2 through the catalogue services (dry runs) and the batches (**idempotent**);
  :mod:`.bulk` — pass 2 of a real run with a few set-based statements per batch; :mod:`.storage` — the
  image files;
* :mod:`.orchestration` — :func:`import_dataset`: both passes, one transaction or one per batch
  (**nothing half-imported**), the audit event, prompt lists;
* :mod:`.job` — the background job and the import roots (:func:`resolve_import_path`);
* :mod:`.base` — limits, errors and the report (**bounded reports**).

Everything other code takes from ``curation.services.importing`` is re-exported here. ``_insert`` lives in
:mod:`.bulk` and is looked up there: patch ``curation.services.importing.bulk._insert``.
"""

from curation.services.importing.base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SINGLE_TRANSACTION_MAX_BYTES,
    FORMATS,
    MAX_ERROR_CHARS,
    MAX_LISTED_ERRORS,
    MAX_PATH_CHARS,
    MAX_PROVENANCE_CHARS,
    MAX_SHORT,
    MAX_TEXT,
    NO_TASK,
    DatasetImportReport,
    ImportRefused,
    Progress,
    RowError,
)
from curation.services.importing.bulk import _insert
from curation.services.importing.checking import _pool_size
from curation.services.importing.job import ImportFailed, import_roots, path_exists, resolve_import_path, run_import_job
from curation.services.importing.orchestration import DatasetImport, import_dataset
from curation.services.importing.reading import detect_format

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SINGLE_TRANSACTION_MAX_BYTES",
    "FORMATS",
    "MAX_ERROR_CHARS",
    "MAX_LISTED_ERRORS",
    "MAX_PATH_CHARS",
    "MAX_PROVENANCE_CHARS",
    "MAX_SHORT",
    "MAX_TEXT",
    "NO_TASK",
    "DatasetImport",
    "DatasetImportReport",
    "ImportFailed",
    "ImportRefused",
    "Progress",
    "RowError",
    "_insert",
    "_pool_size",
    "detect_format",
    "import_dataset",
    "import_roots",
    "path_exists",
    "resolve_import_path",
    "run_import_job",
]

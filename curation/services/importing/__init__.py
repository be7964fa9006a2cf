"""Import Science-T2I datasets into the catalogue: tuples, images, pairs and their decisions
(``manage.py import_dataset``, ``POST /api/curation/imports/``, the import page).

Formats (``fmt="auto"`` picks by what ``path`` is):

* ``parquet`` — a Science-T2I parquet file, or a directory of ``*.parquet`` (recursive; the split of a file
  comes from its name or folder, see :func:`science_t2i.format.parquet_split`). Accepted layouts: the published
  datasets (``Science-T2I-Trainset/data/train-*.parquet`` and ``validation-*``, ``Science-T2I-S/data/
  test-*.parquet`` → split ``test_S``, ``Science-T2I-C/data/test-*.parquet`` → ``test_C``), each folder
  alone or a folder holding all three, with exactly the 9 published columns (train rows hold *lists* of
  paraphrases in the prompt columns, and several images per side); and our combined export (one row per
  pair, string prompts plus ``implicit_prompts``/``explicit_prompts``/``superficial_prompts`` with every
  wording, ``tuple_id``, ``pair_id``, ``task``, ``discipline``, ``scene``, ``subject``, ``label``,
  ``consensus``, ``agreement``, ``n_judgements``). Rows are read by :mod:`science_t2i.format` (its per-row
  reader), the one definition of the format, so the platform and the ML code agree on it.
* ``jsonl`` — one tuple per line, as :func:`science_t2i.format.read_jsonl` reads it: ``implicit_prompt``,
  ``correct_image`` and ``wrong_image`` (image *paths*, relative to the file: image folders next to the
  file), optional ``explicit_prompt``, ``superficial_prompt``, ``task``, ``subject``, ``split``, the lists
  ``implicit_prompts`` (etc.) and ``correct_images``/``wrong_images``, the rubrics, our export's ``label``
  and decision columns, plus the platform's ``scene``, ``source`` and ``provenance``. A line with neither
  image imports the tuple only.
* ``prompts`` — a JSON list of prompt records (``reality_simple_300.json``): handed to
  :func:`annotation.services.importing.import_prompts` (``auto`` picks it for a file starting with ``[``).

What is written, per row: :func:`~annotation.services.catalog.upsert_tuple` with every wording of each
prompt (the others as the tuple's paraphrases) and the rubrics ``scene_scoring``/``real_scoring``; the
scene is the row's ``scene`` column, else ``complex`` for split ``test_C`` and ``simple`` otherwise (for new
tuples); :func:`~annotation.services.catalog.store_image` for each image (deduplicated by sha256), and one
pair per image pairing. **Pairing rule**: with ``n`` explicit and ``m`` superficial images a row gives
``max(n, m)`` pairs, pair ``i`` = (explicit[i % n], superficial[i % m]), so every image is in a pair. The
explicit image is the expected-correct one, except in rows of our export labelled ``other``, whose images
are put back in the catalogue's orientation. By default (``decisions="import"``) each pair gets the row's
label as an imported decision with its provenance and leaves the queue, so an imported dataset can be
frozen into a version without re-judging; ``decisions="open"`` leaves new pairs open for annotation.
Details and the reasons: :mod:`.records`.

Options (same names in the API and on the import page; the command's flags in brackets): ``fmt``
(``--format``), ``split``, ``source``, ``scene``, ``task_default`` (``--task-default``: a task code for rows
naming no task, or ``none`` to import them without one), ``auto_task`` (``--auto-task``: the keyword rules
of :mod:`annotation.task_rules` guess the task of rows naming none), ``merge_same_prompt``
(``--merge-same-prompt``: a row without a task joins the one tuple that has its prompt with a task),
``decisions`` (``--open-for-annotation`` = ``"open"``), ``dry_run``, ``batch_size``. How a row's task is
chosen (``category``/``law`` read by value, in either column): :mod:`.tasks`.

The report (:class:`DatasetImportReport`, ``as_dict``): ``format``, ``source``, ``mode``, ``dry_run``,
``options``, ``rows``, ``records`` (pairs read), ``tuples``/``images``/``pairs`` (created, updated, skipped),
``decisions`` (``recorded``, ``unchanged``, ``kept``: a pair decided here keeps its own decision),
``unassigned`` (``count`` and the first ``rows`` without a task: file, row, prompt, reason),
``same_prompt`` (prompts met without a task that have a task elsewhere: ``count``, ``rows``, ``merged``,
``prompts``), ``errors`` and ``error_count``. A dry run counts all of it without writing.

How, in two passes; each part's decisions are written next to its code:

* :mod:`.reading` — the input formats: parquet and JSONL rows, readable once per pass, and ``auto``
  detection;
* :mod:`.records` — what a row becomes: its pairs, tuple fields, scene, source and decision, and the checks
  of its fields and image paths (**pairs**, **labels**, **decisions**, **untrusted paths**, **defaults
  never change stored tuples**); :mod:`.tasks` — the row's task and the listings of rows without one;
* :mod:`.checking` — pass 1: every row checked and its images decoded before anything is written;
* :mod:`.writing` — pass 2 through the catalogue services (dry runs) and the batches (**idempotent**);
  :mod:`.bulk` — pass 2 of a real run with a few set-based statements per batch; :mod:`.storage` — the
  image files;
* :mod:`.orchestration` — :func:`import_dataset`: both passes, one transaction or one per batch
  (**nothing half-imported**), the audit event, prompt lists;
* :mod:`.job` — the background job and the import roots (:func:`resolve_import_path`);
* :mod:`.base` — limits, errors and the report (**bounded reports**).

Everything other code takes from ``curation.services.importing`` is re-exported here. Fault-injection tests
patch :func:`.bulk.insert_rows` (the set-based inserts) in ``curation.services.importing.bulk``, where it is
looked up.
"""

from curation.services.importing.base import (
    DECISIONS,
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
from curation.services.importing.job import (
    ImportFailed,
    import_params,
    import_roots,
    path_exists,
    resolve_import_path,
    run_import_job,
)
from curation.services.importing.orchestration import DatasetImport, import_dataset
from curation.services.importing.reading import detect_format

__all__ = [
    "DECISIONS",
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
    "detect_format",
    "import_dataset",
    "import_params",
    "import_roots",
    "path_exists",
    "resolve_import_path",
    "run_import_job",
]

"""Export a frozen dataset version: Science-T2I parquet (combined, or the published layout), JSONL + image
folder, WebDataset tar shards.

``export_version(version, fmt)`` writes ``MEDIA_ROOT/exports/<version id>/<format>/`` (or ``out=``) and
returns a result dict (``path``, ``files``, ``bytes``, ``counts``, ``manifest``). The export is built in a
temporary sibling directory (``.<name>.tmp-<random>``) and renamed into place only when complete, so a
reader never sees half an export; on any error the temporary directory is removed and nothing appears at
the final path. A process killed outright cannot remove it: each temporary directory has a flocked
``.lock`` sibling, and the next export of the same target removes those whose lock is free
(:func:`sweep_abandoned`; tested by SIGKILLing a worker mid-export). A finished export (its directory holds
``MANIFEST.sha256``) of the same version and format is reused: versions are immutable, and ``export.json``
records the version's content hash to be sure.

Every export holds ``MANIFEST.sha256`` (``sha256sum`` format: ``<hex>  <relative path>``, one line per file,
sorted; verify with ``sha256sum -c MANIFEST.sha256``) and ``export.json`` (provenance and counts).

Members are streamed split by split in pair order, ``batch_size`` at a time (``.values().iterator()``),
and image bytes are read from ``default_storage`` per batch, so memory is bounded by about two batches
(plus one parquet row group) whatever the size of the version. The work is spread over threads, as the
encoded bytes are only copied, never decoded: the next batch's images are read in the background while
the current one is written, parquet row groups are encoded and written in the background while the next
is built, and the sha256 of the manifest is computed in the background as files are finished (from the
bytes in memory for the JSONL image folder), so finishing the export does not read everything back.
Shards roll over before ``shard_bytes`` (default 500 MB) would be exceeded, judged by the encoded image
bytes plus text of each row; a single row larger than the limit gets a shard of its own. The figures are
in ``docs/benchmarks/export.md`` (``bench/export_import.py``).

Labels and images
-----------------
A member's label is stated relative to the pair's *expected* image (see :mod:`curation.models`). The
exported "correct" image is the one the experts judged correct:

* ``expected`` → correct = ``pair.image_correct``, wrong = ``pair.image_wrong``;
* ``other`` → **swapped**: correct = ``pair.image_wrong``, wrong = ``pair.image_correct`` (the experts chose
  the image the catalogue expected to be wrong);
* ``both`` / ``neither`` have no correct image: they are **left out of parquet and WebDataset** (whose layout
  states which image is correct) and counted under ``counts["excluded"]``; JSONL keeps every member, with
  ``correct_image``/``wrong_image`` in the pair's expected orientation for these two labels, so consumers
  must filter on ``label`` (``expected_image``/``other_image`` always give the catalogue's orientation).

Formats
-------
* ``parquet`` — one row per member: the published Science-T2I columns in the published order
  (:data:`science_t2i.format.PUBLISHED_COLUMNS`: ``implicit_prompt``, ``explicit_prompt``, ``superficial_prompt``
  as strings, ``explicit_image`` = [correct image], ``superficial_image`` = [wrong image] as lists of
  ``datasets.Image`` structs ``{bytes, path}`` with embedded bytes, ``scene_scoring``, ``real_scoring``,
  ``category`` = task name, ``law`` = task code); then every wording of each prompt (``implicit_prompts``,
  ``explicit_prompts``, ``superficial_prompts``), ``tuple_id``, ``pair_id``, ``task`` (code), ``discipline``,
  ``scene``, ``subject``, ``label``, ``consensus`` (the frozen outcome), ``agreement``, ``n_judgements``.
  Files ``data/<split>-<i:05d>-of-<n:05d>.parquet`` for the splits ``train``, ``validation``, ``test_S``,
  ``test_C`` (a split without rows has no file): ``datasets`` infers custom split names from exactly that
  pattern, so ``load_dataset("parquet", data_dir=...)`` keeps test_S and test_C apart (with the files at the
  top it merged them into ``test``); a dataset card ``README.md`` whose YAML ``configs`` map each split to
  its files serves ``load_dataset(<dir>)``. The image bytes columns are written without compression,
  dictionary or statistics (JPEG/PNG/WebP bytes do not compress); the other columns use pyarrow's defaults.
* ``published`` — the published layout (:mod:`.published`): ``Science-T2I-Trainset/`` (one row per tuple,
  list columns), ``Science-T2I-S/`` and ``Science-T2I-C/`` (one ``test`` split each), exactly the published
  columns.
* ``jsonl`` — ``tuples.jsonl`` (every member) and ``<split>.jsonl``; images in ``images/<sha256>.<ext>``
  (each stored once), referenced by paths relative to the export directory (readable by
  :func:`science_t2i.format.read_jsonl` once both/neither rows are filtered out).
* ``webdataset`` — ``<split>-<n:05d>.tar`` shards; sample key ``p<pair id>``: ``<key>.json`` (prompts, ids,
  label, consensus, ...), ``<key>.correct.<ext>``, ``<key>.wrong.<ext>`` (standard ``tarfile``).

How, module by module:

* :mod:`.orchestration` — :func:`export_version` (temporary folder, rename into place, reuse of a finished
  export) and the job handler :func:`run_export_job`;
* :mod:`.staging` — claiming the temporary folder and its lock, :func:`sweep_abandoned`, discarding an
  outdated export;
* :mod:`.source` — the members in bounded batches with their images (:class:`Row`), and the counts;
* :mod:`.parquet` (with :mod:`.card`, the dataset card and agreement summary), :mod:`.published`,
  :mod:`.jsonl`, :mod:`.webdataset` — the writers of the four formats;
* :mod:`.hashing` — the sha256 of the files (:class:`Hasher`, in the background);
* :mod:`.base` — constants, errors, where exports live, results and manifests.

Everything other code takes from ``curation.services.exporting`` is re-exported here. Fault-injection tests
patch the functions where they are looked up: :func:`.source.read_stored_file` (the image reads) in
``curation.services.exporting.source`` and :func:`.base.write_manifest` in
``curation.services.exporting.orchestration``.
"""

from curation.services.exporting.base import (
    DECIDED,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SHARD_BYTES,
    FORMATS,
    MANIFEST,
    METADATA,
    SPLITS,
    ExportError,
    Progress,
    export_dir,
    export_root,
    finished_export,
    read_manifest,
    verify_manifest,
)
from curation.services.exporting.card import dataset_card
from curation.services.exporting.jsonl import write_jsonl_export
from curation.services.exporting.orchestration import export_version, run_export_job
from curation.services.exporting.parquet import parquet_schema, write_parquet_export
from curation.services.exporting.source import Row
from curation.services.exporting.staging import sweep_abandoned
from curation.services.exporting.webdataset import write_webdataset_export

__all__ = [
    "DECIDED",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SHARD_BYTES",
    "FORMATS",
    "MANIFEST",
    "METADATA",
    "SPLITS",
    "ExportError",
    "Progress",
    "Row",
    "dataset_card",
    "export_dir",
    "export_root",
    "export_version",
    "finished_export",
    "parquet_schema",
    "read_manifest",
    "run_export_job",
    "sweep_abandoned",
    "verify_manifest",
    "write_jsonl_export",
    "write_parquet_export",
    "write_webdataset_export",
]

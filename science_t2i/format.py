"""The Science-T2I file format: the one definition of it in this project.

Everything that reads or writes Science-T2I data goes through this module: the platform's importer and
exporter (``curation.services.importing`` and ``.exporting``) and the ML code (``ml.core``, ``ml.cli``). It
holds

* the published columns (:data:`PUBLISHED_COLUMNS`) and their ``datasets`` features
  (:func:`science_t2i_fields`, :func:`schema_with_features`, :func:`published_features_yaml`,
  :func:`image_struct`);
* the row shape of one tuple (:class:`TupleRecord`, images as :class:`ImageRef` that decode on call);
* the readers: :func:`read_jsonl` (one tuple per line, images as file paths; the whole file is checked up
  front and every bad line is reported with its number) and :func:`jsonl_record` (one line);
  :func:`read_parquet_dir` (Science-T2I-style parquet, the published dataset or our export, streamed in row
  batches so memory stays flat in the number of rows), :func:`parquet_files` (the files and their splits,
  :func:`parquet_split`) and :func:`parquet_records` (one row);
* the writer :func:`write_parquet` (records as the published test-set shape);
* how the grouping columns and task names are read (:func:`read_grouping`, :func:`task_code`,
  :func:`discipline_of`, :func:`task_key`) against the seeded taxonomy (:data:`TASKS`).

It imports neither Django nor the project's apps (``pyarrow`` and ``Pillow`` only), so the ML core and the
command line use it without a database.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

# The seeded taxonomy (code -> discipline, ST/CT); mirrors annotation/taxonomy.py without Django.
TASKS: dict[str, tuple[str, str]] = {
    "GR": ("physics", "CT"),
    "SO": ("physics", "CT"),
    "ME": ("physics", "CT"),
    "AB": ("physics", "ST"),
    "BU": ("physics", "ST"),
    "DI": ("physics", "ST"),
    "EL": ("physics", "CT"),
    "EV": ("physics", "CT"),
    "LI": ("physics", "CT"),
    "RU": ("chemistry", "CT"),
    "IM": ("chemistry", "ST"),
    "FR": ("chemistry", "ST"),
    "LR": ("biology", "CT"),
    "WR": ("biology", "CT"),
    "SC": ("biology", "ST"),
    "RI": ("biology", "CT"),
}
TASK_NAMES: dict[str, str] = {
    "GR": "Gravity",
    "SO": "Solidification",
    "ME": "Melting",
    "AB": "Absorption",
    "BU": "Buoyancy",
    "DI": "Diffusion",
    "EL": "Electricity",
    "EV": "Evaporation",
    "LI": "Liquefaction",
    "RU": "Rust",
    "IM": "Immiscibility",
    "FR": "Flame reaction",
    "LR": "Light requirement",
    "WR": "Watering requirement",
    "SC": "Seasonal change",
    "RI": "Ripeness",
}


@dataclass
class TupleRecord:
    implicit_prompt: str
    explicit_prompt: str
    superficial_prompt: str
    # None in a tuple read without images (a JSONL line with prompts only)
    correct_image: Callable[[], Image.Image] | Image.Image | None
    wrong_image: Callable[[], Image.Image] | Image.Image | None
    task: str = ""
    discipline: str = ""
    kind: str = ""  # ST or CT
    subject: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)
    # Every wording of each prompt and every image of each side (published train rows carry several; the
    # paper's trainer draws one of each at random per example). Element 0 is the single field above; each
    # list defaults to that one element.
    implicit_prompts: list[str] = field(default_factory=list)
    explicit_prompts: list[str] = field(default_factory=list)
    superficial_prompts: list[str] = field(default_factory=list)
    correct_images: list = field(default_factory=list)
    wrong_images: list = field(default_factory=list)

    def __post_init__(self):
        if self.task and self.task in TASKS:
            discipline, kind = TASKS[self.task]
            self.discipline = self.discipline or discipline
            self.kind = self.kind or kind
        for name in ("implicit_prompt", "explicit_prompt", "superficial_prompt"):
            values = getattr(self, f"{name}s")
            single = getattr(self, name)
            if not values:
                setattr(self, f"{name}s", [single] if single else [])
            elif not single:
                setattr(self, name, values[0])
        for name in ("correct_image", "wrong_image"):
            values = getattr(self, f"{name}s")
            if not values:
                setattr(self, f"{name}s", [getattr(self, name)])

    def images(self) -> tuple[Image.Image, Image.Image]:
        """(correct, wrong), loaded now."""
        return load_image(self.correct_image), load_image(self.wrong_image)


def load_image(image) -> Image.Image:
    """An image field of a record (an image, or a callable that loads one) as an image."""
    return image() if callable(image) else image


class DataError(ValueError):
    """A dataset file that cannot be read as tuples; the message names the file and line or row."""


def task_key(value: str) -> str:
    """How task and discipline names are compared: lower case, ``_`` and ``-`` read as spaces, runs of
    spaces as one (``"Flame_reaction"`` and ``"flame  reaction"`` have the same key)."""
    return " ".join(re.sub(r"[_\-]", " ", value).lower().split())


_TASK_LOOKUP = {task_key(code): code for code in TASKS} | {task_key(name): code for code, name in TASK_NAMES.items()}
DISCIPLINES = ("physics", "chemistry", "biology")


def task_code(value: str | None) -> str:
    """The seeded task code for a code or a name in any case ("RU", "rust", "Flame_reaction"); "" if unknown."""
    return _TASK_LOOKUP.get(task_key(value or ""), "")


def discipline_of(value: str | None) -> str:
    """The seeded discipline slug for a discipline name in any case ("Physics" → "physics"); "" if unknown."""
    key = task_key(value or "") if isinstance(value, str) else ""
    return key if key in DISCIPLINES else ""


GROUPING_COLUMNS = ("category", "law")


def read_grouping(values: dict) -> tuple[str, str, dict[str, str]]:
    """``(task code, discipline slug, {column: what it held})`` from a row's ``category`` and ``law``.

    What the published columns hold is documented nowhere (the paper groups results by discipline, the
    project site by task), so both are read *by value*: a seeded task code or name is a task, a discipline
    name a discipline, in either column. ``what`` is ``task``, ``discipline``, ``unrecognised`` or ``empty``
    per column, so callers can say which column held what instead of grouping silently by nothing."""
    task, discipline, held = "", "", {}
    for column in GROUPING_COLUMNS:
        value = values.get(column)
        if not isinstance(value, str) or not value.strip():
            held[column] = "empty"
        elif code := task_code(value):
            task = task or code
            held[column] = "task"
        elif slug := discipline_of(value):
            discipline = discipline or slug
            held[column] = "discipline"
        else:
            held[column] = "unrecognised"
    if task and not discipline:
        discipline = TASKS[task][0]
    return task, discipline, held


@dataclass(frozen=True)
class ImageRef:
    """A lazily loaded image: encoded bytes kept in memory, or a file. Calling it decodes the image.

    A plain object rather than a lambda so records pickle (DataLoader workers) and print usefully.
    """

    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    def __call__(self) -> Image.Image:
        image = Image.open(io.BytesIO(self.data) if self.data is not None else self._file())
        image.load()
        return image

    def encoded(self) -> bytes:
        """The file's bytes as stored (PNG, JPEG, ...), without decoding."""
        return self.data if self.data is not None else self._file().read_bytes()

    def _file(self) -> Path:
        if self.path is None:
            raise DataError("an image with neither bytes nor a path")
        return self.path


# --- JSONL -----------------------------------------------------------------------------------------

_JSONL_TEXT_FIELDS = ("explicit_prompt", "superficial_prompt", "task", "discipline", "kind", "subject", "split")
_MAX_REPORTED = 20


def read_jsonl(path: str | Path) -> list[TupleRecord]:
    """Read one tuple per line; raise :class:`DataError` listing every bad line (``file:line: why``).

    A line is a JSON object with ``implicit_prompt``, ``correct_image`` and ``wrong_image`` (required),
    ``explicit_prompt`` and ``superficial_prompt`` (optional, default ""; evaluation needs only the implicit
    prompt, training code checks for the others), ``task`` (a code or a name of a seeded task, else kept as
    given: admins add tasks), ``discipline``, ``kind`` (ST/CT; filled in for seeded tasks), ``subject``,
    ``split``; optional lists ``implicit_prompts``/``explicit_prompts``/``superficial_prompts`` (paraphrases)
    and ``correct_images``/``wrong_images`` (more image paths of each side); any other key lands in
    ``extra``. Blank lines are skipped.

    Image paths: absolute paths are used as they are; relative ones resolve against the JSONL file's folder
    (``..`` included). This reader serves operators' own files, as trusted as the command line that names
    them; untrusted uploads go through the platform's importer, which stores images by storage key. Every
    image must exist when the file is read, so a missing one fails now, with its line, not mid-training.
    """
    path = Path(path)
    records, errors = [], []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(jsonl_record(json.loads(line), path.parent))
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})")
            except DataError as exc:
                errors.append(f"{path}:{number}: {exc}")
    if errors:
        more = f"\n... and {len(errors) - _MAX_REPORTED} more" if len(errors) > _MAX_REPORTED else ""
        raise DataError(f"{len(errors)} bad line(s):\n" + "\n".join(errors[:_MAX_REPORTED]) + more)
    return records


def jsonl_record(obj, folder: Path) -> TupleRecord:
    """The record of one JSONL line (``obj``, its parsed JSON; see :func:`read_jsonl`), image paths relative
    to ``folder``. Raises :class:`DataError` saying what is wrong with the line."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("implicit_prompt", "correct_image", "wrong_image") if not obj.get(k)]
    if missing:
        raise DataError(f"missing {', '.join(missing)}")
    for key in ("implicit_prompt", "correct_image", "wrong_image", *_JSONL_TEXT_FIELDS):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DataError(f"{key} must be a string, got {type(obj[key]).__name__}")
    text: dict[str, Any] = {key: obj.get(key) or "" for key in _JSONL_TEXT_FIELDS}
    if text["kind"] not in ("", "ST", "CT"):
        raise DataError(f"kind {text['kind']!r}: use ST or CT")
    text["task"] = task_code(text["task"]) or text["task"]
    lists: dict[str, Any] = {}
    for key, first in (
        ("implicit_prompts", "implicit_prompt"),
        ("explicit_prompts", "explicit_prompt"),
        ("superficial_prompts", "superficial_prompt"),
    ):
        more = _prompt_list(obj.get(key), key)
        single = obj.get(first) or ""
        lists[key] = ([single] if single else []) + [p for p in more if p != single]
    for key, first in (("correct_images", "correct_image"), ("wrong_images", "wrong_image")):
        paths = obj.get(key) or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise DataError(f"{key} must be a list of image paths")
        refs = [ImageRef(path=_image_file(obj[first], folder, first))]
        refs += [ImageRef(path=_image_file(p, folder, key)) for p in paths if p != obj[first]]
        lists[key] = refs
    known = {"implicit_prompt", "correct_image", "wrong_image", *_JSONL_TEXT_FIELDS, *lists}
    return TupleRecord(
        implicit_prompt=obj["implicit_prompt"],
        correct_image=lists["correct_images"][0],
        wrong_image=lists["wrong_images"][0],
        extra={k: v for k, v in obj.items() if k not in known},
        **text,
        **lists,
    )


def _image_file(value: str, folder: Path, key: str) -> Path:
    resolved = (folder / value).resolve()  # an absolute value replaces folder
    if not resolved.is_file():
        raise DataError(f"{key} {value!r} not found (looked for {resolved})")
    return resolved


# --- parquet ---------------------------------------------------------------------------------------

_PROMPT_COLUMNS = ("implicit_prompt", "explicit_prompt", "superficial_prompt")
_IMAGE_COLUMNS = ("explicit_image", "superficial_image")
_REQUIRED_COLUMNS = ("implicit_prompt", *_IMAGE_COLUMNS)


def parquet_split(file: Path, root: Path) -> str:
    """The split a parquet file holds, from its name or folder.

    ``train-00000-of-00002.parquet`` (the Hub's shard names) → ``train``, and ``test-…`` inside a published
    benchmark folder (``Science-T2I-S``, ``Science-T2I-C``) → ``test_S`` / ``test_C``; a file without ``-``
    in a sub-folder of ``root`` → that folder (``test_S/0.parquet`` → ``test_S``); otherwise the file's stem
    (``test_C.parquet`` → ``test_C``).
    """
    if "-" in file.stem:
        split = file.stem.split("-", 1)[0]
        return _benchmark_split(file, root) if split == "test" else split
    return file.parent.name if file.parent != root else file.stem


def _benchmark_split(file: Path, root: Path) -> str:
    """``test`` of a published benchmark dataset folder as ``test_S`` or ``test_C``: the folder holding the
    dataset (``Science-T2I-S/data/test-00000-of-00001.parquet``, or ``root`` itself) ends in ``-S``/``_S`` or
    ``-C``/``_C``; any other ``test`` stays ``test``."""
    folders = [file.parent, *file.parent.parents]
    for folder in folders:
        name = folder.name
        if name[-2:].upper() in ("-S", "_S"):
            return "test_S"
        if name[-2:].upper() in ("-C", "_C"):
            return "test_C"
        if folder == root.parent:
            break
    return "test"


def read_parquet_dir(
    path: str | Path, split: str | None = None, *, batch_size: int = 64, per_row: bool = False
) -> Iterator[TupleRecord]:
    """Stream records from a Science-T2I-style parquet file or a directory of ``*.parquet`` (recursive).

    ``split`` keeps only the files of that split (see :func:`parquet_split`; each record's ``split`` is its
    file's). Files and columns are checked now; rows are read lazily, ``batch_size`` at a time with
    ``ParquetFile.iter_batches``, and bad rows raise :class:`DataError` naming file and row.

    Per row: prompt columns are strings, or lists of paraphrases (train split); every wording is in the
    record's ``implicit_prompts`` (etc.), the first in ``implicit_prompt``, and a list column is also kept in
    ``extra["<column>s"]``. A plural column (``implicit_prompts``, our combined export's) adds its
    paraphrases. ``explicit_image`` and ``superficial_image`` are lists of ``{bytes, path}`` structs (a single
    struct is accepted too). ``per_row=False`` (the platform's reading): the i-th explicit image is paired
    with the i-th superficial one, one record per pair (``extra["image_index"]``), unpaired images of a
    longer list skipped. ``per_row=True`` (the paper's reading): one record per row, ``correct_images`` and
    ``wrong_images`` holding every image, element 0 in ``correct_image``/``wrong_image`` (what the published
    evaluation takes). An image without bytes is read from its ``path``, relative to the parquet file's
    folder. ``category`` and ``law`` are read by value (:func:`read_grouping`: a task code or name, or a
    discipline, in either column; what each held is in ``extra["grouping"]``); our export's ``task`` and
    ``discipline`` columns win when present. Every other column (``scene_scoring``, ``category``...) goes to
    ``extra``.
    """
    return _iter_parquet(parquet_files(path, split), batch_size, per_row)


def parquet_files(
    path: str | Path, split: str | None = None, *, within: Iterable[Path] | None = None
) -> list[tuple[Path, str]]:
    """``(file, split)`` of a parquet file, or of every ``*.parquet`` under a directory (recursive, sorted;
    linked directories are not entered), keeping those of ``split`` when given (see :func:`parquet_split`).
    Raises :class:`DataError` now when there is no such file, no file of that split, or a file lacks a
    required column (``implicit_prompt``, ``explicit_image``, ``superficial_image``).

    ``within``: folders every file must lie in once links are resolved; a file (a link) that resolves
    elsewhere is refused before anything is read from it, with the same message whether its target exists
    or not."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_file():
        files = [(path, parquet_split(path, path.parent))]
    elif path.is_dir():
        listed = [
            Path(folder) / name
            for folder, _, names in os.walk(path, followlinks=False)
            for name in names
            if name.endswith(".parquet")
        ]
        files = [(f, parquet_split(f, path)) for f in sorted(listed)]
    else:
        raise DataError(f"{path}: no such parquet file or directory")
    if within is not None:
        allowed = [Path(os.path.realpath(folder)) for folder in within]
        for file, _ in files:
            real = Path(os.path.realpath(file))
            if not any(real == folder or real.is_relative_to(folder) for folder in allowed):
                raise DataError(f"{file}: a link to a file outside the folders this import may read")
    if not files:
        raise DataError(f"{path}: no *.parquet files")
    if split is not None:
        found = sorted({s for _, s in files})
        files = [(f, s) for f, s in files if s == split]
        if not files:
            raise DataError(f"{path}: no parquet files of split {split!r} (splits found: {', '.join(found)})")
    for file, _ in files:
        missing = [c for c in _REQUIRED_COLUMNS if c not in pq.read_schema(file).names]
        if missing:
            raise DataError(f"{file}: missing column(s) {', '.join(missing)}")
    return files


def _iter_parquet(files: list[tuple[Path, str]], batch_size: int, per_row: bool = False) -> Iterator[TupleRecord]:
    import pyarrow.parquet as pq

    for file, split in files:
        row = 0
        parquet = pq.ParquetFile(file)
        # One row group at a time: iter_batches over the whole file keeps what it has read (the
        # image bytes) alive, so memory would grow with the file.
        for group in range(parquet.num_row_groups):
            for batch in parquet.read_row_group(group).to_batches(max_chunksize=batch_size):
                for values in batch.to_pylist():
                    try:
                        yield from parquet_records(values, file.parent, split, per_row=per_row)
                    except DataError as exc:
                        raise DataError(f"{file}: row {row}: {exc}") from None
                    row += 1


def _prompt_list(value, column: str) -> list[str]:
    """A prompt cell (a string, or a list of paraphrases) as the list of its non-empty wordings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) or v is None for v in value):
        return [v for v in value if v]
    raise DataError(f"{column} must be a string or a list of strings")


def parquet_records(values: dict, folder: Path, split: str, *, per_row: bool = False) -> Iterator[TupleRecord]:
    """The records of one parquet row (``values``: column → value, as ``pyarrow`` gives them; see
    :func:`read_parquet_dir`), image paths relative to ``folder``, each record of split ``split``. Raises
    :class:`DataError` saying what is wrong with the row."""
    prompts, extra = {}, {}
    for column in _PROMPT_COLUMNS:
        wordings = _prompt_list(values.get(column), column)
        # Our combined export keeps one pair per row with the prompt as a string and every paraphrase in
        # the plural column (``implicit_prompts``); a published train row has the list in the column itself.
        for more in _prompt_list(values.get(f"{column}s"), f"{column}s"):
            if more not in wordings:
                wordings.append(more)
        if isinstance(values.get(column), list):
            extra[f"{column}s"] = values[column]
        prompts[column] = wordings
    if not prompts["implicit_prompt"]:
        raise DataError("empty implicit_prompt")
    correct, wrong = (_image_refs(values.get(column), folder, column) for column in _IMAGE_COLUMNS)
    if not correct or not wrong:
        raise DataError("needs at least one explicit_image and one superficial_image")
    used = {*_PROMPT_COLUMNS, *_IMAGE_COLUMNS, *(f"{c}s" for c in _PROMPT_COLUMNS)}
    extra |= {k: v for k, v in values.items() if k not in used}
    task, discipline, held = read_grouping(values)
    task = task_code(values.get("task")) or task  # our export's own column, when present
    discipline = discipline_of(values.get("discipline")) or discipline
    extra["grouping"] = held
    common: dict[str, Any] = {
        "task": task,
        "discipline": discipline,
        "split": split,
        "implicit_prompt": prompts["implicit_prompt"][0],
        "explicit_prompt": (prompts["explicit_prompt"] or [""])[0],
        "superficial_prompt": (prompts["superficial_prompt"] or [""])[0],
        "implicit_prompts": prompts["implicit_prompt"],
        "explicit_prompts": prompts["explicit_prompt"],
        "superficial_prompts": prompts["superficial_prompt"],
        "subject": values.get("subject") if isinstance(values.get("subject"), str) else "",
    }
    if per_row:
        yield TupleRecord(
            correct_image=correct[0],
            wrong_image=wrong[0],
            correct_images=correct,
            wrong_images=wrong,
            extra={**extra, "image_index": 0},
            **common,
        )
        return
    for index, (right, other) in enumerate(zip(correct, wrong, strict=False)):  # unpaired images: skipped
        yield TupleRecord(correct_image=right, wrong_image=other, extra={**extra, "image_index": index}, **common)


def _image_refs(value, folder: Path, column: str) -> list[ImageRef]:
    items = value if isinstance(value, list) else [] if value is None else [value]
    refs = []
    for item in items:
        if not isinstance(item, dict):
            raise DataError(f"{column}: expected {{bytes, path}} structs")
        if item.get("bytes"):
            refs.append(ImageRef(data=item["bytes"]))
        elif item.get("path"):
            refs.append(ImageRef(path=_image_file(item["path"], folder, column)))
        else:
            raise DataError(f"{column}: an image with neither bytes nor path")
    return refs


# The published columns, in the published cards' order. Test sets (Science-T2I-S, -C) have string prompts;
# the train set has lists of paraphrases. Images are lists of ``datasets.Image`` (``sequence: image``).
PUBLISHED_COLUMNS = (
    "implicit_prompt",
    "explicit_prompt",
    "superficial_prompt",
    "explicit_image",
    "superficial_image",
    "scene_scoring",
    "real_scoring",
    "category",
    "law",
)


def value_feature(dtype: str = "string") -> dict:
    """The ``datasets`` feature of a scalar column of ``dtype`` (``string``, ``int64``, ``float64``...)."""
    return {"dtype": dtype, "_type": "Value"}


def image_struct(data: bytes, path: str | None) -> dict:
    """One image of an image column: a ``datasets.Image`` struct with the encoded bytes embedded and a
    file name (``path``) that only names it."""
    return {"bytes": data, "path": path}


def published_features_yaml(*, prompt_lists: bool = False) -> list[str]:
    """The ``dataset_info.features`` lines of a dataset card's YAML for the published columns, in their
    order (``prompt_lists``: the train set's shape, prompt columns as sequences of strings)."""
    lines = ["dataset_info:", "  features:"]
    for column in PUBLISHED_COLUMNS:
        lines.append(f"  - name: {column}")
        if column.endswith("_image"):
            lines.append("    sequence: image")
        elif column.endswith("_prompt") and prompt_lists:
            lines.append("    sequence: string")
        else:
            lines.append("    dtype: string")
    return lines


def science_t2i_fields(*, prompt_lists: bool = False) -> list[tuple[str, object, object]]:
    """``(name, pyarrow type, datasets feature)`` of the published columns; ``prompt_lists``: the train set's
    shape (each prompt column a list of paraphrases). A list of one feature is the spelling every
    ``datasets`` version reads as a sequence."""
    import pyarrow as pa

    image = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    text = value_feature("string")
    prompt = (pa.list_(pa.string()), [text]) if prompt_lists else (pa.string(), text)
    fields = []
    for name in PUBLISHED_COLUMNS:
        if name.endswith("_prompt"):
            fields.append((name, *prompt))
        elif name.endswith("_image"):
            fields.append((name, image, [{"_type": "Image"}]))
        else:
            fields.append((name, pa.string(), text))
    return fields


def schema_with_features(fields: list[tuple[str, object, object]]):
    """A pyarrow schema whose metadata carries the ``datasets`` features, so ``load_dataset("parquet", ...)``
    decodes the image columns as images."""
    import pyarrow as pa

    features = {name: feature for name, _, feature in fields}
    return pa.schema(
        [(name, dtype) for name, dtype, _ in fields],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )


def _parquet_schema():
    return schema_with_features(science_t2i_fields())


def write_parquet(records: Iterable[TupleRecord], path: str | Path, *, batch_size: int = 256) -> int:
    """Write records as Science-T2I parquet, one row per record; return the number of rows.

    Columns (:data:`PUBLISHED_COLUMNS`): the three prompts (strings), ``explicit_image`` = [correct image],
    ``superficial_image`` = [wrong image] as ``{bytes, path}`` structs, ``scene_scoring`` and
    ``real_scoring`` (``extra``), ``category`` (the seeded task's name, else the task code,
    else ``extra["category"]``) and ``law`` (``extra["law"]``). Images keep their stored encoding when they
    are :class:`ImageRef` s; in-memory images are encoded as PNG. ``records`` may be a generator: rows are
    written ``batch_size`` at a time, to a temporary name renamed into place at the end, so a reader never
    sees a half-written file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    schema, rows, written = _parquet_schema(), [], 0
    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            for record in records:
                rows.append(_parquet_row(record))
                if len(rows) == batch_size:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    written, rows = written + len(rows), []
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                written += len(rows)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return written


def _parquet_row(record: TupleRecord) -> dict:
    return {
        "implicit_prompt": record.implicit_prompt,
        "explicit_prompt": record.explicit_prompt,
        "superficial_prompt": record.superficial_prompt,
        "explicit_image": [_record_image(record.correct_image)],
        "superficial_image": [_record_image(record.wrong_image)],
        "scene_scoring": _text_or_empty(record.extra.get("scene_scoring")),
        "real_scoring": _text_or_empty(record.extra.get("real_scoring")),
        "category": TASK_NAMES.get(record.task) or record.task or record.extra.get("category", ""),
        "law": record.extra.get("law", ""),
    }


def _text_or_empty(value) -> str:
    return value if isinstance(value, str) else ""


def _record_image(image) -> dict:
    if isinstance(image, ImageRef):
        return image_struct(image.encoded(), image.path.name if image.path else None)
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="PNG")
    return image_struct(buffer.getvalue(), None)

"""Datasets of tuples for scoring, training and evaluation.

A :class:`TupleRecord` is one Science-T2I tuple with one correct and one wrong image. Readers turn files
into records whose images load lazily (an :class:`ImageRef` that decodes on call):

* :func:`read_jsonl`: one tuple per line, images as file paths; the whole file is checked up front and
  every bad line is reported with its number;
* :func:`read_parquet_dir`: Science-T2I-style parquet (the published dataset, or our export), streamed
  in row batches so memory stays flat in the number of rows; :func:`write_parquet` writes that shape.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

# The seeded taxonomy (code -> discipline, ST/CT); mirrors annotation/taxonomy.py without Django.
TASKS: dict[str, tuple[str, str]] = {
    "GR": ("physics", "CT"), "SO": ("physics", "CT"), "ME": ("physics", "CT"), "AB": ("physics", "ST"),
    "BU": ("physics", "ST"), "DI": ("physics", "ST"), "EL": ("physics", "CT"), "EV": ("physics", "CT"),
    "LI": ("physics", "CT"), "RU": ("chemistry", "CT"), "IM": ("chemistry", "ST"), "FR": ("chemistry", "ST"),
    "LR": ("biology", "CT"), "WR": ("biology", "CT"), "SC": ("biology", "ST"), "RI": ("biology", "CT"),
}
TASK_NAMES: dict[str, str] = {
    "GR": "Gravity", "SO": "Solidification", "ME": "Melting", "AB": "Absorption", "BU": "Buoyancy",
    "DI": "Diffusion", "EL": "Electricity", "EV": "Evaporation", "LI": "Liquefaction", "RU": "Rust",
    "IM": "Immiscibility", "FR": "Flame reaction", "LR": "Light requirement", "WR": "Watering requirement",
    "SC": "Seasonal change", "RI": "Ripeness",
}


@dataclass
class TupleRecord:
    implicit_prompt: str
    explicit_prompt: str
    superficial_prompt: str
    correct_image: Callable[[], Image.Image] | Image.Image
    wrong_image: Callable[[], Image.Image] | Image.Image
    task: str = ""
    discipline: str = ""
    kind: str = ""  # ST or CT
    subject: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task and self.task in TASKS:
            discipline, kind = TASKS[self.task]
            self.discipline = self.discipline or discipline
            self.kind = self.kind or kind

    def images(self) -> tuple[Image.Image, Image.Image]:
        """(correct, wrong), loaded now."""
        return load_image(self.correct_image), load_image(self.wrong_image)


def load_image(image) -> Image.Image:
    """An image field of a record (an image, or a callable that loads one) as an image."""
    return image() if callable(image) else image


class DataError(ValueError):
    """A dataset file that cannot be read as tuples; the message names the file and line or row."""


def _task_key(value: str) -> str:
    return " ".join(re.sub(r"[_\-]", " ", value).lower().split())


_TASK_LOOKUP = {_task_key(code): code for code in TASKS} | {_task_key(name): code for code, name in TASK_NAMES.items()}


def task_code(value: str | None) -> str:
    """The seeded task code for a code or a name in any case ("RU", "rust", "Flame_reaction"); "" if unknown."""
    return _TASK_LOOKUP.get(_task_key(value or ""), "")


@dataclass(frozen=True)
class ImageRef:
    """A lazily loaded image: encoded bytes kept in memory, or a file. Calling it decodes the image.

    A plain object rather than a lambda so records pickle (DataLoader workers) and print usefully.
    """

    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    def __call__(self) -> Image.Image:
        image = Image.open(io.BytesIO(self.data) if self.data is not None else self.path)
        image.load()
        return image

    def encoded(self) -> bytes:
        """The file's bytes as stored (PNG, JPEG, ...), without decoding."""
        return self.data if self.data is not None else self.path.read_bytes()


# --- JSONL -----------------------------------------------------------------------------------------

_JSONL_TEXT_FIELDS = ("explicit_prompt", "superficial_prompt", "task", "discipline", "kind", "subject", "split")
_MAX_REPORTED = 20


def read_jsonl(path: str | Path) -> list[TupleRecord]:
    """Read one tuple per line; raise :class:`DataError` listing every bad line (``file:line: why``).

    A line is a JSON object with ``implicit_prompt``, ``correct_image`` and ``wrong_image`` (required),
    ``explicit_prompt`` and ``superficial_prompt`` (optional, default ""; evaluation needs only the implicit
    prompt, training code checks for the others), ``task`` (a code or a name of a seeded task, else kept as
    given: admins add tasks), ``discipline``, ``kind`` (ST/CT; filled in for seeded tasks), ``subject``,
    ``split``; any other key lands in ``extra``. Blank lines are skipped.

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
                records.append(_jsonl_record(json.loads(line), path.parent))
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})")
            except DataError as exc:
                errors.append(f"{path}:{number}: {exc}")
    if errors:
        more = f"\n... and {len(errors) - _MAX_REPORTED} more" if len(errors) > _MAX_REPORTED else ""
        raise DataError(f"{len(errors)} bad line(s):\n" + "\n".join(errors[:_MAX_REPORTED]) + more)
    return records


def _jsonl_record(obj, folder: Path) -> TupleRecord:
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("implicit_prompt", "correct_image", "wrong_image") if not obj.get(k)]
    if missing:
        raise DataError(f"missing {', '.join(missing)}")
    for key in ("implicit_prompt", "correct_image", "wrong_image", *_JSONL_TEXT_FIELDS):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DataError(f"{key} must be a string, got {type(obj[key]).__name__}")
    text = {key: obj.get(key) or "" for key in _JSONL_TEXT_FIELDS}
    if text["kind"] not in ("", "ST", "CT"):
        raise DataError(f"kind {text['kind']!r}: use ST or CT")
    text["task"] = task_code(text["task"]) or text["task"]
    known = {"implicit_prompt", "correct_image", "wrong_image", *_JSONL_TEXT_FIELDS}
    return TupleRecord(
        implicit_prompt=obj["implicit_prompt"],
        correct_image=ImageRef(path=_image_file(obj["correct_image"], folder, "correct_image")),
        wrong_image=ImageRef(path=_image_file(obj["wrong_image"], folder, "wrong_image")),
        extra={k: v for k, v in obj.items() if k not in known},
        **text,
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

    ``train-00000-of-00002.parquet`` (the Hub's shard names) → ``train``; a file without ``-`` in a
    sub-folder of ``root`` → that folder (``test_S/0.parquet`` → ``test_S``); otherwise the file's stem
    (``test_C.parquet`` → ``test_C``).
    """
    if "-" in file.stem:
        return file.stem.split("-", 1)[0]
    return file.parent.name if file.parent != root else file.stem


def read_parquet_dir(path: str | Path, split: str | None = None, *, batch_size: int = 64) -> Iterator[TupleRecord]:
    """Stream records from a Science-T2I-style parquet file or a directory of ``*.parquet`` (recursive).

    ``split`` keeps only the files of that split (see :func:`parquet_split`; each record's ``split`` is its
    file's). Files and columns are checked now; rows are read lazily, ``batch_size`` at a time with
    ``ParquetFile.iter_batches``, and bad rows raise :class:`DataError` naming file and row.

    Per row: prompt columns are strings, or lists of paraphrases (train split): the first is used and the
    list kept in ``extra["<column>s"]`` (e.g. ``extra["implicit_prompts"]``). ``explicit_image`` and
    ``superficial_image`` are lists of ``{bytes, path}`` structs (a single struct is accepted too): the i-th
    explicit image is paired with the i-th superficial one, one record per pair (``extra["image_index"]``);
    unpaired images of a longer list are skipped. An image without bytes is read from its ``path``, relative
    to the parquet file's folder. ``category`` maps to a task (codes or names, any case); an unknown category
    leaves ``task`` empty. ``category``, ``law`` and every other column (``scene_scoring``, ...) go to
    ``extra``.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_file():
        files = [(path, parquet_split(path, path.parent))]
    elif path.is_dir():
        files = [(f, parquet_split(f, path)) for f in sorted(path.rglob("*.parquet"))]
    else:
        raise DataError(f"{path}: no such parquet file or directory")
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
    return _iter_parquet(files, batch_size)


def _iter_parquet(files: list[tuple[Path, str]], batch_size: int) -> Iterator[TupleRecord]:
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
                        yield from _parquet_records(values, file.parent, split)
                    except DataError as exc:
                        raise DataError(f"{file}: row {row}: {exc}") from None
                    row += 1


def _parquet_records(values: dict, folder: Path, split: str) -> Iterator[TupleRecord]:
    extra, prompts = {}, {}
    for column in _PROMPT_COLUMNS:
        value = values.get(column)
        if isinstance(value, list):
            extra[f"{column}s"] = value
            value = value[0] if value else None
        if value is not None and not isinstance(value, str):
            raise DataError(f"{column} must be a string or a list of strings")
        prompts[column] = value or ""
    if not prompts["implicit_prompt"]:
        raise DataError("empty implicit_prompt")
    correct, wrong = (_image_refs(values.get(column), folder, column) for column in _IMAGE_COLUMNS)
    if not correct or not wrong:
        raise DataError("needs at least one explicit_image and one superficial_image")
    used = {*_PROMPT_COLUMNS, *_IMAGE_COLUMNS}
    extra |= {k: v for k, v in values.items() if k not in used}
    for index, (right, other) in enumerate(zip(correct, wrong)):
        yield TupleRecord(correct_image=right, wrong_image=other, task=task_code(values.get("category")),
                          split=split, extra={**extra, "image_index": index}, **prompts)


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


def _features() -> dict:
    """The ``datasets`` features of the Science-T2I columns we write, stored in the schema metadata so
    ``datasets.load_dataset("parquet", ...)`` decodes the image columns as images. A list of one feature is
    the spelling every ``datasets`` version reads as a sequence."""
    text = {"dtype": "string", "_type": "Value"}
    images = [{"_type": "Image"}]
    return {"implicit_prompt": text, "explicit_prompt": text, "superficial_prompt": text,
            "explicit_image": images, "superficial_image": images, "category": text, "law": text}


def _parquet_schema():
    import pyarrow as pa

    image = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    columns = [(c, pa.string()) for c in _PROMPT_COLUMNS] + [(c, image) for c in _IMAGE_COLUMNS]
    columns += [("category", pa.string()), ("law", pa.string())]
    return pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": _features()}})})


def write_parquet(records: Iterable[TupleRecord], path: str | Path, *, batch_size: int = 256) -> int:
    """Write records as Science-T2I parquet, one row per record; return the number of rows.

    Columns: the three prompts (strings), ``explicit_image`` = [correct image], ``superficial_image`` =
    [wrong image] as ``{bytes, path}`` structs, ``category`` (the seeded task's name, else the task code,
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
        "explicit_image": [_image_struct(record.correct_image)],
        "superficial_image": [_image_struct(record.wrong_image)],
        "category": TASK_NAMES.get(record.task) or record.task or record.extra.get("category", ""),
        "law": record.extra.get("law", ""),
    }


def _image_struct(image) -> dict:
    if isinstance(image, ImageRef):
        return {"bytes": image.encoded(), "path": image.path.name if image.path else None}
    buffer = io.BytesIO()
    load_image(image).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}

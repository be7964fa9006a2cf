"""Reading the input formats: parquet files or folders and JSONL files, as rows (:class:`Row`) that can be
read any number of times (once per pass), the image bytes a row names, and ``auto`` format detection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from annotation.imaging import ImageRejected
from curation.services.importing.base import MAX_PARAPHRASES, MAX_TEXT, RowError
from curation.services.importing.records import (
    Options,
    Row,
    check_image_count,
    checked_text,
    decision_fields,
    make_items,
    safe_image_path,
)
from curation.services.importing.tasks import GROUPING_COLUMNS, choose_task
from science_t2i.format import DataError, TupleRecord, jsonl_record, parquet_files, parquet_records

_TASK_COLUMNS = ("task_code", "task")  # a row's own task columns; then category/law by value (.tasks)
_JSONL_PLATFORM_KEYS = ("scene", "source", "provenance")


class Source:
    """Rows of one input, readable any number of times (once per pass)."""

    kind = ""

    def total_rows(self) -> int:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    def rows(self, opts: Options) -> Iterator[Row]:
        raise NotImplementedError

    def labels(self) -> list[str]:
        """The names its rows' errors give their files, in reading order."""
        raise NotImplementedError


class ParquetSource(Source):
    kind = "parquet"

    def __init__(self, path: Path, split: str | None, within: list[Path] | None = None):
        # checks the files (``within``: after resolving links) and their columns now (DataError)
        self.files = parquet_files(path, split, within=within)
        self.root = path if path.is_dir() else path.parent

    def _label(self, file: Path) -> str:
        return file.relative_to(self.root).as_posix() if file.is_relative_to(self.root) else file.name

    def labels(self) -> list[str]:
        return [self._label(file) for file, _ in self.files]

    def total_rows(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f, _ in self.files)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f, _ in self.files)

    def rows(self, opts: Options) -> Iterator[Row]:
        import pyarrow.parquet as pq

        for file, split in self.files:
            label = self._label(file)
            number = 0
            parquet = pq.ParquetFile(file)
            # One row group at a time: iter_batches over the whole file keeps what it read in memory until
            # the end of the file (the resident set grew by the file's size).
            batches = (
                batch
                for group in range(parquet.num_row_groups)
                for batch in parquet.iter_batches(batch_size=64, row_groups=[group])
            )
            for batch in batches:
                for values in batch.to_pylist():
                    number += 1
                    row = Row(label, number)
                    try:
                        row.choice, row.items = self._items(values, file.parent, split, opts, label, number)
                    except RowError as exc:
                        row.error = str(exc)
                    yield row

    def _items(self, values: dict, folder: Path, split: str, opts: Options, label: str, number: int):
        for column in ("explicit_image", "superficial_image"):
            value = values.get(column)
            check_image_count(value, column)
            for item in value if isinstance(value, list) else [value] if isinstance(value, dict) else []:
                if isinstance(item, dict) and not item.get("bytes") and item.get("path"):
                    safe_image_path(item["path"], folder, column)
        for column in ("implicit_prompt", "explicit_prompt", "superficial_prompt"):
            for name in (column, f"{column}s"):
                if isinstance(values.get(name), list) and len(values[name]) > MAX_PARAPHRASES:
                    raise RowError(f"{name} has {len(values[name])} wordings; the limit is {MAX_PARAPHRASES}")
        try:
            record = next(parquet_records(values, folder, split, per_row=True))
        except DataError as exc:
            raise RowError(str(exc)) from None
        prompt = checked_text(record.implicit_prompt, "implicit_prompt", MAX_TEXT)
        choice = choose_task(
            opts,
            [(c, values.get(c)) for c in _TASK_COLUMNS],
            {c: values.get(c) for c in GROUPING_COLUMNS if c in values},
            prompt,
            values.get("discipline"),
        )
        provenance = {"file": label, "row": number, "split": split}
        for column in GROUPING_COLUMNS:
            if isinstance(values.get(column), str) and values[column]:
                provenance[column] = values[column]
        if isinstance(values.get("tuple_id"), int) and not isinstance(values["tuple_id"], bool):
            provenance["tuple_id"] = values["tuple_id"]
        claim, decision = decision_fields(values, file=label, number=number, split=split, platform="published")
        subject = values.get("subject") if isinstance(values.get("subject"), str) else ""
        scene = _scene(values.get("scene"))
        items = make_items(
            record,
            choice=choice,
            scene=scene,
            opts=opts,
            provenance=provenance,
            rubrics=values,
            claim=claim,
            decision=decision,
            columns=("explicit_image", "superficial_image"),
            subject=subject,
        )
        return choice, items


def _scene(value) -> str | None:
    """A row's own scene (``None``: not given; the split or the option decides)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError("scene must be a string")
    return value.strip().lower() or None


class JsonlSource(Source):
    kind = "jsonl"

    def __init__(self, path: Path):
        self.path = path

    def labels(self) -> list[str]:
        return [self.path.name]

    def total_rows(self) -> int:
        with self.path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())

    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def rows(self, opts: Options) -> Iterator[Row]:
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                row = Row(self.path.name, number)
                try:
                    row.choice, row.items = self._items(line, opts, number)
                except RowError as exc:
                    row.error = str(exc)
                yield row

    def _items(self, line: bytes, opts: Options, number: int):
        try:
            obj = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            raise RowError(f"the line is not UTF-8 ({exc})") from None
        except json.JSONDecodeError as exc:
            raise RowError(f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise RowError("expected a JSON object")
        folder = self.path.parent
        platform = {key: obj.pop(key) for key in _JSONL_PLATFORM_KEYS if key in obj}
        provenance = platform.get("provenance") or {}
        if not isinstance(provenance, dict):
            raise RowError("provenance must be an object")
        for key in ("implicit_prompts", "explicit_prompts", "superficial_prompts"):
            if isinstance(obj.get(key), list) and len(obj[key]) > MAX_PARAPHRASES:
                raise RowError(f"{key} has {len(obj[key])} wordings; the limit is {MAX_PARAPHRASES}")
        if "correct_image" not in obj and "wrong_image" not in obj:  # a tuple without images
            for key in ("implicit_prompt", "explicit_prompt", "superficial_prompt", "task", "subject", "split"):
                checked_text(obj.get(key), key, MAX_TEXT)
            record = TupleRecord(
                obj.get("implicit_prompt") or "",
                obj.get("explicit_prompt") or "",
                obj.get("superficial_prompt") or "",
                None,
                None,
                subject=obj.get("subject") or "",
                split=obj.get("split") or "",
            )
        else:
            for column in ("correct_image", "wrong_image"):
                if obj.get(column):
                    safe_image_path(obj[column], folder, column)
            for column in ("correct_images", "wrong_images"):
                paths = obj.get(column)
                check_image_count(paths, column)
                for value in paths if isinstance(paths, list) else ():
                    if isinstance(value, str) and value:
                        safe_image_path(value, folder, column)
            try:
                record = jsonl_record(obj, folder)
            except DataError as exc:
                raise RowError(str(exc)) from None
        prompt = checked_text(record.implicit_prompt, "implicit_prompt", MAX_TEXT)
        choice = choose_task(
            opts,
            [("task", obj.get("task"))],
            {c: obj.get(c) for c in GROUPING_COLUMNS if c in obj},
            prompt,
            obj.get("discipline"),
        )
        provenance = {"file": self.path.name, "row": number, **provenance}
        claim, decision = decision_fields(
            obj, file=self.path.name, number=number, split=record.split or "", platform="tuples file"
        )
        items = make_items(
            record,
            choice=choice,
            scene=_scene(platform.get("scene")),
            opts=opts,
            provenance=provenance,
            rubrics=obj,
            claim=claim,
            decision=decision,
            columns=("correct_image", "wrong_image"),
            source=platform.get("source"),
        )
        return choice, items


def image_bytes(ref) -> bytes:
    """The encoded bytes of an :class:`science_t2i.format.ImageRef`, refusing oversized files before reading."""
    if ref.data is not None:
        return ref.data
    try:
        size = ref.path.stat().st_size
        if size > settings.IMAGE_MAX_BYTES:
            raise ImageRejected(f"The file is {size} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
        return ref.path.read_bytes()
    except OSError as exc:
        raise RowError(f"cannot read image {ref.path.name}: {exc.strerror or exc}") from None


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    if path.suffix.lower() == ".parquet":
        return "parquet"
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "jsonl"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return "prompts"
    return "jsonl"

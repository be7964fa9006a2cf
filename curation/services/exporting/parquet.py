"""The parquet export: the Science-T2I schema plus our columns, sharded writers with row groups encoded in the
background, and :func:`write_parquet_export` (with its dataset card, see :mod:`.card`).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from curation.services.exporting.base import DECIDED, SPLITS
from curation.services.exporting.card import agreement_add, agreement_summary, dataset_card
from curation.services.exporting.hashing import Hasher
from curation.services.exporting.source import (
    Row,
    Source,
    common_columns,
    count_excluded,
    count_row,
    counts_skeleton,
    tuple_columns,
)
from science_t2i.format import image_struct, schema_with_features, science_t2i_fields, value_feature

# --- parquet ---------------------------------------------------------------------------------------

_EXTRA_COLUMNS = (
    ("tuple_id", "int64"),
    ("pair_id", "int64"),
    ("task", "string"),
    ("discipline", "string"),
    ("scene", "string"),
    ("subject", "string"),
    ("label", "string"),
    ("consensus", "string"),
    ("agreement", "float64"),
    ("n_judgements", "int64"),
)
_WORDING_COLUMNS = ("implicit_prompts", "explicit_prompts", "superficial_prompts")


def parquet_schema():
    """The combined export's schema: the published Science-T2I columns (string prompts, as in the test sets),
    every wording of each prompt as lists (``implicit_prompts``, ...), then our columns; ``datasets``
    features in the metadata. One schema for all four splits, so ``load_dataset`` reads them as one dataset."""
    import pyarrow as pa

    fields = science_t2i_fields()
    fields += [(name, pa.list_(pa.string()), [value_feature("string")]) for name in _WORDING_COLUMNS]
    fields += [(name, getattr(pa, dtype)(), value_feature(dtype)) for name, dtype in _EXTRA_COLUMNS]
    return schema_with_features(fields)


def _parquet_options(schema) -> dict:
    """ParquetWriter options: the encoded images (JPEG, PNG, WebP: already compressed) are stored as they
    are, without compression, a dictionary or min/max statistics, which would cost time for nothing;
    every other column keeps pyarrow's defaults (snappy, dictionary, statistics)."""
    import pyarrow as pa

    images, others = [], []
    for field in schema:
        if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            images.append(f"{field.name}.list.element.bytes")
            others.append(f"{field.name}.list.element.path")
        else:
            others.append(field.name)
    return {
        "compression": {**dict.fromkeys(others, "snappy"), **dict.fromkeys(images, "none")},
        "use_dictionary": others,
        "write_statistics": others,
    }


def image_structs(images: list[tuple[bytes, str, str]]) -> list[dict]:
    """An image column's value: each ``(bytes, sha256, extension)`` (:meth:`Row.image`) as a
    :func:`science_t2i.format.image_struct` named ``<sha256>.<extension>``."""
    return [image_struct(data, f"{sha}.{ext}") for data, sha, ext in images]


def published_values(row: Row) -> dict:
    """The published columns of one member (test-set shape: string prompts, one image per side): the
    experts' correct image as ``explicit_image``; ``category`` = task name, ``law`` = task code (our
    convention, stated in the dataset card)."""
    v = row.values
    return {
        "implicit_prompt": v["implicit_prompt"],
        "explicit_prompt": v["explicit_prompt"] or "",
        "superficial_prompt": v["superficial_prompt"] or "",
        "explicit_image": image_structs([row.image("correct")]),
        "superficial_image": image_structs([row.image("wrong")]),
        "scene_scoring": v["scene_scoring"] or "",
        "real_scoring": v["real_scoring"] or "",
        "category": v["task_name"] or "",
        "law": v["task"] or "",
    }


def _parquet_row(row: Row) -> dict:
    columns = tuple_columns(row)
    return {
        **published_values(row),
        **{name: columns[name] for name in _WORDING_COLUMNS},
        "scene": columns["scene"],
        "subject": columns["subject"],
        **common_columns(row),
    }


def _parquet_table(rows: list[dict], schema):
    """``pa.Table.from_pylist(rows, schema=schema)`` built column by column: the same table, without the
    per-row dictionary walk (the image bytes are copied once, into one buffer per column)."""
    import itertools

    import pyarrow as pa

    arrays = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            offsets = pa.array(itertools.accumulate((len(v) for v in values), initial=0), pa.int32())
            items = [item for v in values for item in v]
            struct = field.type.value_type
            children = [pa.array([item[f.name] for item in items], f.type) for f in struct]
            arrays.append(
                pa.ListArray.from_arrays(
                    offsets, pa.StructArray.from_arrays(children, fields=list(struct)), type=field.type
                )
            )
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class ShardedParquet:
    """Parquet shards of one split, each under ``shard_bytes`` (estimated), one row group per flush.

    Row groups are encoded and written on a background thread (pyarrow releases the GIL) while the next
    batch is read and converted; at most one row group waits, so memory stays at about two batches."""

    def __init__(
        self, folder: Path, split: str, shard_bytes: int, schema, hasher: Hasher | None = None, root: Path | None = None
    ):
        self.folder, self.split, self.shard_bytes, self.schema = folder, split, shard_bytes, schema
        self.hasher = hasher
        self.root = root or folder  # the export's folder: the manifest names files relative to it
        self.shards: list[Path] = []
        self.writer: Any = None  # a pyarrow ParquetWriter while a shard is open
        self.size = 0
        self.rows: list[dict] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def _name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def add(self, row: Row) -> None:
        self.add_values(_parquet_row(row), row.size)

    def add_values(self, values: dict, size: int) -> None:
        """One row of this writer's schema; ``size`` is its estimated bytes (for rolling shards over)."""
        if self.writer is not None and self.size + size > self.shard_bytes:
            self._flush()
            self._close_shard()
        if self.writer is None:
            import pyarrow.parquet as pq

            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f".{self.split}-{len(self.shards):05d}.part"
            self.shards.append(path)
            self.writer, self.size = pq.ParquetWriter(path, self.schema, **_parquet_options(self.schema)), 0
        self.rows.append(values)
        self.size += size

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _close_shard(self) -> None:
        self._wait()
        self.writer.close()
        self.writer = None
        if self.hasher is not None:
            self.hasher.add_file(self._name(self.shards[-1]), self.shards[-1])

    def _flush(self) -> None:
        if self.rows:
            table = _parquet_table(self.rows, self.schema)
            self.rows = []
            self._wait()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="export-parquet")
            self._pending = self._pool.submit(self.writer.write_table, table)

    def end_batch(self) -> None:
        if self.writer is not None:
            self._flush()

    def abandon(self) -> None:
        """Stop the background writer (after an error; the temporary folder is removed by the caller)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None

    def close(self) -> list[str]:
        if self.writer is not None:
            self._flush()
            self._close_shard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        n, names = len(self.shards), []
        for i, path in enumerate(self.shards):
            name = f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            os.rename(path, self.folder / name)
            if self.hasher is not None:
                self.hasher.rename(self._name(path), self._name(self.folder / name))
            names.append(name)
        return names


def write_parquet_export(source: Source, folder: Path, shard_bytes: int) -> dict:
    schema, counts = parquet_schema(), counts_skeleton()
    agreements: dict[str, list] = {}
    for split in SPLITS:
        shards = ShardedParquet(folder / "data", split, shard_bytes, schema, source.hasher, root=folder)
        try:
            for batch in source.batches(split, DECIDED):
                for row in batch:
                    shards.add(row)
                    count_row(counts, row)
                    agreement_add(agreements, split, row.values["agreement"])
                shards.end_batch()
            files = shards.close()
        except BaseException:
            shards.abandon()
            raise
        if files:
            counts["files"][split] = [f"data/{name}" for name in files]
        count_excluded(source, counts, split)
    counts["agreement"] = agreement_summary(agreements)
    (folder / "README.md").write_text(dataset_card(source.version, counts), encoding="utf-8")
    return counts
